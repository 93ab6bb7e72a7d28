// Package authn is the one verifier every function uses: it turns the
// request's credential (an API key or a session JWT) into a principal. Keys
// are checked for shape and checksum before any I/O, looked up by HMAC, and
// cached in-process for a short TTL so nothing touches PostgreSQL per
// request; revocations are pushed to every instance over Redis pub/sub so
// they take effect at once, with the TTL as the backstop. Last-used times are
// written in batches.
package authn

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// KeyStore is what the verifier needs from storage.
type KeyStore interface {
	// LookupKeyAny returns the principal behind whichever hash is stored and
	// the hash that matched; revoked and expired keys are not found.
	LookupKeyAny(ctx context.Context, hashes [][]byte) (sluice.Principal, []byte, error)
	// RehashKey moves a key to the current pepper.
	RehashKey(ctx context.Context, keyID string, hash []byte) error
	// UserPrincipal returns a session subject's principal.
	UserPrincipal(ctx context.Context, userID string) (sluice.Principal, error)
	// PublicKeys returns the JWT verification keys by kid, retired ones
	// included while tokens they signed may live (grace).
	PublicKeys(ctx context.Context, grace time.Duration) (map[string]ed25519.PublicKey, error)
	TouchKeys(ctx context.Context, keyIDs []string, at time.Time) error
}

// Verifier authenticates requests.
type Verifier struct {
	store   KeyStore
	peppers [][]byte // current first, then the previous one during a rotation
	ttl     time.Duration
	log     *slog.Logger
	now     func() time.Time
	tokens  *tokenVerifier
	oidc    *oidcVerifier
	grace   time.Duration // payment grace before a past-due user is served as free

	ended ended // logins and users whose session tokens are refused

	mu    sync.Mutex
	cache map[string]entry // by key hash
	users map[string]entry // session subjects, by user id
	used  map[string]struct{}
}

type entry struct {
	p       sluice.Principal
	found   bool
	expires time.Time
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithPreviousPepper accepts keys hashed under the pepper being rotated out;
// each such key is rehashed under the current pepper when first seen.
func WithPreviousPepper(p []byte) Option {
	return func(v *Verifier) {
		if len(p) > 0 {
			v.peppers = append(v.peppers, p)
		}
	}
}

// WithPaymentGrace sets how long a user whose subscription payment failed
// keeps the paid tier (billing.payment_grace; default 72h).
func WithPaymentGrace(d time.Duration) Option {
	return func(v *Verifier) {
		if d > 0 {
			v.grace = d
		}
	}
}

// WithTokens accepts session JWTs issued by the auth function.
func WithTokens(t TokenConfig) Option {
	return func(v *Verifier) {
		v.tokens = newTokenVerifier(t, v.store)
		v.tokens.noCache = v.ttl <= 0
	}
}

// New returns a verifier. ttl bounds how long a revoked key keeps working if
// a revocation message is lost.
func New(store KeyStore, pepper []byte, ttl time.Duration, log *slog.Logger, opts ...Option) *Verifier {
	v := &Verifier{store: store, peppers: [][]byte{pepper}, ttl: ttl, log: log, now: time.Now, grace: 72 * time.Hour,
		cache: map[string]entry{}, users: map[string]entry{}, used: map[string]struct{}{}}
	for _, o := range opts {
		o(v)
	}
	return v
}

// maxCredential bounds what is even looked at: a key is 38 bytes, a session
// JWT a few hundred.
const maxCredential = 4096

// Bearer extracts the token of an "Authorization: Bearer" header.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Authenticate returns the principal behind the request's API key or token.
func (v *Verifier) Authenticate(ctx context.Context, r *http.Request) (*sluice.Principal, error) {
	tok := Bearer(r)
	if tok == "" {
		return nil, &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidAPIKey,
			Message: "You didn't provide an API key. Provide it in the Authorization header: Bearer <key>."}
	}
	return v.Credential(ctx, tok)
}

// Credential returns the principal behind an API key or a session JWT.
func (v *Verifier) Credential(ctx context.Context, tok string) (*sluice.Principal, error) {
	if len(tok) > maxCredential {
		return nil, sluice.ErrUnauthenticated
	}
	if strings.HasPrefix(tok, apikey.Prefix) || (v.tokens == nil && v.oidc == nil) {
		return v.Key(ctx, tok)
	}
	if v.oidc != nil && issuerOf(tok) == v.oidc.cfg.Issuer {
		return v.External(ctx, tok)
	}
	return v.Token(ctx, tok)
}

// Key returns the principal behind an API key.
func (v *Verifier) Key(ctx context.Context, key string) (*sluice.Principal, error) {
	if apikey.Parse(key) != nil {
		return nil, sluice.ErrUnauthenticated // refused without I/O
	}
	h := apikey.Hash(v.peppers[0], key)
	e, err := v.cached(ctx, v.cache, string(h), func() (sluice.Principal, error) {
		hashes := [][]byte{h}
		for _, p := range v.peppers[1:] {
			hashes = append(hashes, apikey.Hash(p, key))
		}
		p, matched, err := v.store.LookupKeyAny(ctx, hashes)
		if err == nil && string(matched) != string(h) {
			if err := v.store.RehashKey(ctx, p.KeyID, h); err != nil && v.log != nil {
				v.log.WarnContext(ctx, "rehash under the new pepper failed", slog.String("key_id", p.KeyID), slog.String("err", err.Error()))
			}
		}
		return p, err
	})
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.used[e.KeyID] = struct{}{}
	v.mu.Unlock()
	return e, nil
}

// Token returns the principal behind a session JWT. The token only names
// the user; role, tier and the disabled flag come from the (cached) user, so
// a disabled user's tokens stop at once.
func (v *Verifier) Token(ctx context.Context, tok string) (*sluice.Principal, error) {
	if v.tokens == nil {
		return nil, sluice.ErrUnauthenticated
	}
	c, err := v.tokens.verify(ctx, tok)
	if err != nil {
		return nil, err
	}
	if v.sessionEnded(ctx, c) { // logged out, disabled or deleted: refused on every instance
		return nil, sluice.ErrUnauthenticated
	}
	p, err := v.cached(ctx, v.users, c.Subject, func() (sluice.Principal, error) {
		return v.store.UserPrincipal(ctx, c.Subject)
	})
	if err != nil {
		return nil, err
	}
	p.MFA = c.MFA
	p.SessionID = c.SessionID
	return p, nil
}

// cached returns the principal for id from m, loading it on a miss. Unknown
// credentials are cached too, so they cannot hammer the database.
func (v *Verifier) cached(ctx context.Context, m map[string]entry, id string, load func() (sluice.Principal, error)) (*sluice.Principal, error) {
	now := v.now()
	v.mu.Lock()
	e, ok := m[id]
	v.mu.Unlock()
	if !ok || now.After(e.expires) {
		p, err := load()
		switch {
		case err == nil:
			e = entry{p: p, found: true}
		case errors.Is(err, sluice.ErrNotFound):
			e = entry{}
		default:
			return nil, err
		}
		e.expires = now.Add(v.ttl)
		v.mu.Lock()
		if len(m) > 100000 {
			clear(m) // bound memory under a flood of distinct credentials
		}
		m[id] = e
		v.mu.Unlock()
	}
	if !e.found || e.p.Disabled {
		return nil, sluice.ErrUnauthenticated
	}
	p := e.p
	// Resolved on every use, not at load: a grace period that ends while
	// the principal is cached ends on time.
	p.ResolveBilling(now, v.grace)
	return &p, nil
}

// Evict drops a key from this instance's cache at once.
func (v *Verifier) Evict(hash []byte) {
	v.mu.Lock()
	delete(v.cache, string(hash))
	v.mu.Unlock()
}

// evictKeyID drops the cached key with this id.
func (v *Verifier) evictKeyID(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for h, e := range v.cache {
		if e.p.KeyID == id {
			delete(v.cache, h)
		}
	}
}

// evictUser drops every cached credential of a user.
func (v *Verifier) evictUser(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range []map[string]entry{v.cache, v.users} {
		for k, e := range m {
			if e.p.UserID == id || k == id {
				delete(m, k)
			}
		}
	}
}

// Run writes last-used times every interval until ctx ends, then once more.
func (v *Verifier) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			v.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
			v.Flush(ctx)
		}
	}
}

// Flush writes the keys used since the last flush in one statement.
func (v *Verifier) Flush(ctx context.Context) {
	v.mu.Lock()
	ids := make([]string, 0, len(v.used))
	for id := range v.used {
		ids = append(ids, id)
	}
	clear(v.used)
	v.mu.Unlock()
	if err := v.store.TouchKeys(ctx, ids, v.now()); err != nil && v.log != nil {
		v.log.WarnContext(ctx, "last-used update failed", slog.Int("keys", len(ids)), slog.String("err", err.Error()))
	}
}
