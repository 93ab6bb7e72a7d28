// Package auth is the identity function: sign-up and login with argon2id
// passwords, EdDSA session tokens with a JWKS and key rotation, rotating
// refresh tokens with reuse detection, TOTP MFA with recovery codes, API key
// management, the admin API, the audit log and account deletion. Every
// route authenticates through the shared verifier and checks RBAC.
package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Deps is what the auth function needs.
type Deps struct {
	Config *config.Config
	Log    *slog.Logger
	DB     sluice.AuthStore
	Redis  redis.UniversalClient
	// Queue erases a deleted account's jobs.
	Queue    *redisq.Queue
	Verifier *authn.Verifier
	// Objects holds large job payloads (storage.jobs); a deleted account's
	// are erased with its jobs. nil: none are stored.
	Objects *objstore.Jobs
}

// Permissions the admin API needs; "*" grants them.
const (
	PermUserAdmin = "user:admin" // list, create, change and delete users; see and revoke their keys
	PermAuditRead = "audit:read" // read the audit log
)

type service struct {
	Deps
	signer  *signer
	limits  *limiter
	peppers [][]byte
}

// New returns the auth function's handler.
func New(d Deps) http.Handler {
	peppers := [][]byte{[]byte(d.Config.Env.KeyPepper)}
	if d.Config.Env.KeyPepperPrevious != "" {
		peppers = append(peppers, []byte(d.Config.Env.KeyPepperPrevious))
	}
	s := &service{Deps: d, peppers: peppers, limits: &limiter{rdb: d.Redis, window: d.Config.Auth.Identity.Limits.Window}}
	s.signer = newSigner(d.DB, d.Config.Auth.Identity, newSealer(peppers), func(ctx context.Context) {
		if err := authn.SigningKeysChanged(ctx, d.Redis); err != nil {
			d.Log.WarnContext(ctx, "signing key rotation not broadcast; verifiers pick it up within a second", "err", err.Error())
		}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("POST /v1/signup", s.signup)
	mux.HandleFunc("POST /v1/login", s.login)
	mux.HandleFunc("POST /v1/refresh", s.refresh)
	mux.HandleFunc("POST /v1/logout", s.logout)
	mux.HandleFunc("GET /v1/me", s.me)
	mux.HandleFunc("DELETE /v1/me", s.deleteMe)
	mux.HandleFunc("POST /v1/me/mfa/totp", s.mfaEnrol)
	mux.HandleFunc("POST /v1/me/mfa/totp/confirm", s.mfaConfirm)
	mux.HandleFunc("POST /v1/me/mfa/totp/disable", s.mfaDisable)
	mux.HandleFunc("GET /v1/keys", s.listKeys)
	mux.HandleFunc("POST /v1/keys", s.createKey)
	mux.HandleFunc("DELETE /v1/keys/{id}", s.revokeKey)
	mux.HandleFunc("PATCH /v1/keys/{id}", s.updateKeyLimits)
	mux.HandleFunc("POST /v1/keys/{id}/rotate", s.rotateKey)
	mux.HandleFunc("GET /v1/admin/users", s.adminListUsers)
	mux.HandleFunc("POST /v1/admin/users", s.adminCreateUser)
	mux.HandleFunc("PATCH /v1/admin/users/{id}", s.adminUpdateUser)
	mux.HandleFunc("DELETE /v1/admin/users/{id}", s.adminDeleteUser)
	mux.HandleFunc("GET /v1/admin/users/{id}/keys", s.adminListKeys)
	mux.HandleFunc("DELETE /v1/admin/keys/{id}", s.adminRevokeKey)
	mux.HandleFunc("PATCH /v1/admin/keys/{id}", s.adminUpdateKeyLimits)
	mux.HandleFunc("GET /v1/admin/audit", s.adminAudit)
	mux.HandleFunc("GET /v1/admin/email-collisions", s.adminEmailCollisions)
	mux.HandleFunc("POST /v1/admin/signing-keys/rotate", s.adminRotateSigningKey)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "auth", mux, httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes()))
}

var handle = app.Lazy(func(d *app.Deps) http.Handler {
	return New(Deps{Config: d.Config, Log: d.Log, DB: d.DB, Redis: d.Redis, Queue: d.Queue, Verifier: d.Verifier, Objects: d.Objects})
})

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }

// maxAuthBody bounds auth request bodies: they hold a few short fields.
const maxAuthBody = 16 << 10

// decode reads a JSON object into v, refusing unknown fields so that a
// client cannot mass-assign what the route does not take (role, tier...).
func decode(r *http.Request, v any) error {
	body, err := openai.ReadBody(r, maxAuthBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return sluice.Invalid("", sluice.CodeInvalidValue, "The body has an unknown field or a value of the wrong type.")
	}
	return nil
}

// principal authenticates the request and checks one of perms (none: any
// authenticated principal acting on its own objects).
func (s *service) principal(r *http.Request, perms ...string) (*sluice.Principal, error) {
	return s.Verifier.Require(r, s.Config.Permissions, perms...)
}

// admin authenticates an administrator: the permission, and a second factor
// for sessions when the config requires MFA for administrative access.
// A refusal of an authenticated caller is audited: probing admin routes is
// an event worth seeing.
func (s *service) admin(r *http.Request, perm string) (*sluice.Principal, error) {
	p, err := s.principal(r)
	if err != nil {
		return nil, err
	}
	err = authn.Authorize(p, s.Config.Permissions(p.Role), perm)
	if err == nil {
		err = s.requireMFA(p)
	}
	if err != nil {
		s.audit(r, p.UserID, "admin.denied", r.Method+" "+r.URL.Path, "refused", map[string]any{"key_id": p.KeyID})
		return nil, err
	}
	return p, nil
}

// requireMFA refuses an admin session that has not passed a second factor
// (createKey checks it too, so an admin key comes from such a session).
func (s *service) requireMFA(p *sluice.Principal) error {
	return authn.RequireAdminMFA(p, s.Config.Permissions(p.Role), s.Config.Auth.Identity.RequireMFAForAdmin)
}

// CodeMFARequired asks the client to log in again with a TOTP or recovery code.
const CodeMFARequired = sluice.CodeMFARequired

// remote is the caller's address for limits and the audit log: the peer,
// or behind a trusted proxy (server.trusted_proxies) the forwarded client.
func remote(r *http.Request) string { return httpserve.ClientAddr(r) }

// audit appends to the audit log. A failure is logged, not returned: the
// action already happened, and the log line keeps the record.
func (s *service) audit(r *http.Request, actor, action, target, outcome string, detail map[string]any) {
	ctx := context.WithoutCancel(r.Context())
	e := sluice.AuditEntry{ActorID: actor, Action: action, Target: target, Outcome: outcome, Remote: remote(r), Detail: detail}
	if err := s.DB.InsertAudit(ctx, e); err != nil {
		s.Log.ErrorContext(ctx, "audit write failed", slog.String("action", action), slog.String("target", target),
			slog.String("outcome", outcome), slog.String("err", err.Error()))
	}
}

// fail answers with err in the OpenAI error shape.
func (s *service) fail(w http.ResponseWriter, r *http.Request, err error) {
	openai.WriteError(w, r, s.Log, err)
}

func (s *service) me(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "principal", "user_id": p.UserID,
		"email": p.Email, "role": p.Role, "tier": p.Tier, "key_id": p.KeyID, "mfa": p.MFA,
		"permissions": s.Config.Permissions(p.Role), "scopes": nonNil(p.Scopes), "models": nonNil(p.Models)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeList answers with an OpenAI-style list of items rendered by render.
func writeList[T any](w http.ResponseWriter, items []T, render func(T) map[string]any) {
	data := make([]map[string]any, 0, len(items))
	for _, it := range items {
		data = append(data, render(it))
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}
