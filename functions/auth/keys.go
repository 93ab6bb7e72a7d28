package auth

import (
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/rbac"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// scopeRE is the shape of a permission: "*", "area:*" or "area:action".
var scopeRE = regexp.MustCompile(`^(\*|[a-z][a-z_-]{0,31}:(\*|[a-z][a-z_-]{0,31}))$`)

type keyRequest struct {
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	Models    []string   `json:"models"`
	ExpiresAt *time.Time `json:"expires_at"`
	// Limit overrides for the key, at most the creator's own; 0 inherits.
	RequestsPerMinute int64 `json:"requests_per_minute"`
	TokensPerMinute   int64 `json:"tokens_per_minute"`
	Concurrency       int64 `json:"concurrency"`
	// CacheResponses opts the key into the response cache; default false.
	CacheResponses bool `json:"cache_responses"`
	// max are the new key's ceilings: a rotated key's own, narrowed by the
	// creating key's limits (never from the body).
	max sluice.Limits
}

// PermKeysWrite lets an API key create, change, rotate and revoke its
// owner's keys. A session manages its own user's keys without it; a key
// needs it in its scopes ("*" grants it), so a key scoped to inference can
// neither mint a successor that outlives its revocation nor touch others.
const PermKeysWrite = "keys:write"

// keyManager authenticates a key-management request: any session, or an
// API key whose scopes (its role's permissions when unscoped) grant
// keys:write.
func (s *service) keyManager(r *http.Request) (*sluice.Principal, error) {
	p, err := s.principal(r)
	if err != nil {
		return nil, err
	}
	if p.KeyID == "" {
		return p, nil
	}
	perms := p.Scopes
	if len(perms) == 0 {
		perms = s.Config.Permissions(p.Role)
	}
	if !rbac.Allowed(perms, PermKeysWrite) {
		s.audit(r, p.UserID, "key.manage_denied", r.Method+" "+r.URL.Path, "refused", map[string]any{"key_id": p.KeyID})
		return nil, sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
			"This API key's scopes do not include %s: manage keys from a session or with a key that has it.", PermKeysWrite)
	}
	return p, nil
}

// childCeiling is the tighter of two ceilings per field (0: none).
func childCeiling(a, b sluice.Limits) sluice.Limits {
	m := func(x, y int64) int64 {
		switch {
		case x == 0:
			return y
		case y == 0:
			return x
		}
		return min(x, y)
	}
	return sluice.Limits{RequestsPerMinute: m(a.RequestsPerMinute, b.RequestsPerMinute),
		TokensPerMinute: m(a.TokensPerMinute, b.TokensPerMinute), Concurrency: m(a.Concurrency, b.Concurrency)}
}

func (k keyRequest) limits() sluice.Limits {
	return sluice.Limits{RequestsPerMinute: k.RequestsPerMinute, TokensPerMinute: k.TokensPerMinute, Concurrency: k.Concurrency}
}

func keyJSON(k sluice.APIKey) map[string]any {
	unix := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return t.Unix()
	}
	return map[string]any{"object": "api_key", "id": k.ID, "name": k.Name, "prefix": k.Prefix,
		"created_at": k.CreatedAt.Unix(), "last_used_at": unix(k.LastUsedAt), "expires_at": unix(k.ExpiresAt),
		"revoked_at": unix(k.RevokedAt), "scopes": nonNil(k.Scopes), "models": nonNil(k.Models), "limits": k.Limits,
		"cache_responses": k.CacheResponses, "max_limits": k.Max}
}

// keyPolicy checks a new key against its creator: scopes must be a subset
// of what the creator may do (its role, narrowed by its own key's scopes),
// models a subset of the creator's allowlist. A scoped key's child inherits
// its limits, so no key can mint a stronger one.
func (s *service) keyPolicy(p *sluice.Principal, req *keyRequest) error {
	if len(req.Name) > 100 {
		return sluice.Invalid("name", sluice.CodeInvalidValue, "name is longer than 100 characters.")
	}
	// keys:write is the owner's by ownership (sessions manage their keys),
	// so any role can hand it to a key; a key still needs it to pass it on.
	role := append(slices.Clone(s.Config.Permissions(p.Role)), PermKeysWrite)
	if len(req.Scopes) == 0 {
		req.Scopes = slices.Clone(p.Scopes)
	}
	for _, sc := range req.Scopes {
		if !scopeRE.MatchString(sc) {
			return sluice.Invalid("scopes", sluice.CodeInvalidValue, "%q is not a permission.", sc)
		}
		if !rbac.Allowed(role, sc) || (len(p.Scopes) > 0 && !rbac.Allowed(p.Scopes, sc)) {
			return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
				"A key cannot have the %s scope: you do not have it.", sc)
		}
	}
	if len(req.Models) == 0 {
		req.Models = slices.Clone(p.Models)
	}
	for _, m := range req.Models {
		if _, ok := s.Config.Model(m); !ok {
			return sluice.Invalid("models", sluice.CodeInvalidValue, "%q is not a served model.", m)
		}
		if authn.AllowModel(p, m) != nil {
			return sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
				"A key cannot allow model %q: your credential does not.", m)
		}
	}
	if req.ExpiresAt != nil && !req.ExpiresAt.After(time.Now()) {
		return sluice.Invalid("expires_at", sluice.CodeInvalidValue, "expires_at must be in the future.")
	}
	if p.KeyID != "" {
		// A key's child never gets looser than the key: the key's
		// effective limits become the child's ceilings, which the child's
		// owner cannot lift (clearing a limit falls back to them).
		req.max = childCeiling(req.max, sluice.Limits{RequestsPerMinute: p.Limits.RequestsPerMinute,
			TokensPerMinute: p.Limits.TokensPerMinute, Concurrency: p.Limits.Concurrency})
	}
	return s.withinOwner(p, req.limits())
}

// mint creates a key for p (after the policy and the rate limit) and returns
// it with its plaintext, which is shown once and never stored.
func (s *service) mint(r *http.Request, p *sluice.Principal, req keyRequest, rotatedFrom *string) (sluice.APIKey, string, error) {
	if err := s.requireMFA(p); err != nil {
		return sluice.APIKey{}, "", err
	}
	if err := s.limits.allow(r.Context(), "keys", p.UserID, s.Config.Auth.Identity.Limits.KeysPerUser); err != nil {
		return sluice.APIKey{}, "", err
	}
	key, err := apikey.New()
	if err != nil {
		return sluice.APIKey{}, "", sluice.Internal(err)
	}
	k, err := s.DB.CreateKey(r.Context(), sluice.NewKey{UserID: p.UserID, Name: req.Name, Hash: apikey.Hash(s.peppers[0], key),
		Prefix: apikey.Display(key), ExpiresAt: req.ExpiresAt, Scopes: req.Scopes, Models: req.Models, RotatedFrom: rotatedFrom,
		Limits: req.limits(), CacheResponses: req.CacheResponses, Max: req.max})
	return k, key, err
}

func (s *service) createKey(w http.ResponseWriter, r *http.Request) {
	p, err := s.keyManager(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req keyRequest
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.keyPolicy(p, &req); err != nil {
		s.audit(r, p.UserID, "key.create", "", "refused", map[string]any{"scopes": req.Scopes, "models": req.Models})
		s.fail(w, r, err)
		return
	}
	k, key, err := s.mint(r, p, req, nil)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.audit(r, p.UserID, "key.create", k.ID, "ok", map[string]any{"prefix": k.Prefix, "scopes": k.Scopes, "models": k.Models, "limits": k.Limits,
		"cache_responses": k.CacheResponses})
	out := keyJSON(k)
	out["key"] = key
	openai.WriteJSON(w, http.StatusCreated, out)
}

func (s *service) listKeys(w http.ResponseWriter, r *http.Request) {
	p, err := s.principal(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeKeys(w, r, p.UserID)
}

func (s *service) writeKeys(w http.ResponseWriter, r *http.Request, userID string) {
	ks, err := s.DB.ListKeys(r.Context(), userID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeList(w, ks, keyJSON)
}

// revokeKey revokes one of the caller's keys everywhere at once. Another
// user's key reads as not found.
func (s *service) revokeKey(w http.ResponseWriter, r *http.Request) {
	p, err := s.keyManager(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if _, err := s.DB.RevokeKey(r.Context(), p.UserID, id); err != nil {
		s.audit(r, p.UserID, "key.revoke", id, "not_found", nil)
		s.fail(w, r, notFoundKey(err))
		return
	}
	s.broadcastKey(r, id)
	s.audit(r, p.UserID, "key.revoke", id, "ok", nil)
	w.WriteHeader(http.StatusNoContent)
}

// broadcastKey evicts a key from every verifier; if Redis is down the
// revocation still lands within the cache TTL.
func (s *service) broadcastKey(r *http.Request, keyID string) {
	if err := s.Verifier.RevokeKey(r.Context(), s.Redis, keyID); err != nil {
		s.Log.WarnContext(r.Context(), "revocation broadcast failed; the cache TTL bounds it", "key_id", keyID, "err", err.Error())
	}
}

func notFoundKey(err error) error {
	if sluice.KindOf(err) == sluice.KindNotFound || sluice.KindOf(err) == sluice.KindInvalid {
		return sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "No such API key.")
	}
	return err
}

// rotateKey issues a successor with the same name, scopes, models and
// expiry; the old key keeps working for the overlap, then expires.
func (s *service) rotateKey(w http.ResponseWriter, r *http.Request) {
	p, err := s.keyManager(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var b struct {
		OverlapSeconds *int64 `json:"overlap_seconds"`
	}
	if r.ContentLength != 0 {
		if err := decode(r, &b); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	overlap := s.Config.Auth.Identity.KeyRotationOverlap
	if b.OverlapSeconds != nil {
		if *b.OverlapSeconds < 0 || *b.OverlapSeconds > 30*86400 {
			s.fail(w, r, sluice.Invalid("overlap_seconds", sluice.CodeInvalidValue, "overlap_seconds must be between 0 and 2592000."))
			return
		}
		overlap = time.Duration(*b.OverlapSeconds) * time.Second
	}
	ctx := r.Context()
	id := r.PathValue("id")
	old, err := s.DB.GetKey(ctx, p.UserID, id)
	if err != nil || old.RevokedAt != nil || (old.ExpiresAt != nil && old.ExpiresAt.Before(time.Now())) {
		s.fail(w, r, notFoundKey(sluice.ErrNotFound))
		return
	}
	req := keyRequest{Name: old.Name, Scopes: old.Scopes, Models: old.Models, ExpiresAt: old.ExpiresAt,
		RequestsPerMinute: old.Limits.RequestsPerMinute, TokensPerMinute: old.Limits.TokensPerMinute, Concurrency: old.Limits.Concurrency,
		CacheResponses: old.CacheResponses, max: old.Max}
	if err := s.keyPolicy(p, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	k, key, err := s.mint(r, p, req, &old.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.DB.ExpireKeyBy(ctx, p.UserID, old.ID, time.Now().Add(overlap)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.broadcastKey(r, old.ID) // its cached entry does not know the new expiry
	s.audit(r, p.UserID, "key.rotate", old.ID, "ok", map[string]any{"new_key_id": k.ID, "overlap_seconds": int64(overlap.Seconds())})
	out := keyJSON(k)
	out["key"] = key
	out["rotated_from"] = old.ID
	openai.WriteJSON(w, http.StatusCreated, out)
}
