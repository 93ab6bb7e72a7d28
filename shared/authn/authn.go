// Package authn is the one verifier every function uses: it turns the
// request's credential into a principal. Keys are checked for shape and
// checksum before any I/O, looked up by HMAC, and cached in-process for a
// short TTL so nothing touches PostgreSQL per request; last-used times are
// written in batches.
package authn

import (
	"context"
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
	LookupKey(ctx context.Context, hash []byte) (sluice.Principal, error)
	TouchKeys(ctx context.Context, keyIDs []string, at time.Time) error
}

// Verifier authenticates requests.
type Verifier struct {
	store  KeyStore
	pepper []byte
	ttl    time.Duration
	log    *slog.Logger
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]entry
	used  map[string]struct{}
}

type entry struct {
	p       sluice.Principal
	found   bool
	expires time.Time
}

// New returns a verifier. ttl bounds how long a revoked key keeps working.
func New(store KeyStore, pepper []byte, ttl time.Duration, log *slog.Logger) *Verifier {
	return &Verifier{store: store, pepper: pepper, ttl: ttl, log: log, now: time.Now,
		cache: map[string]entry{}, used: map[string]struct{}{}}
}

// Bearer extracts the token of an "Authorization: Bearer" header.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Authenticate returns the principal behind the request's API key.
func (v *Verifier) Authenticate(ctx context.Context, r *http.Request) (*sluice.Principal, error) {
	tok := Bearer(r)
	if tok == "" {
		return nil, &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidAPIKey,
			Message: "You didn't provide an API key. Provide it in the Authorization header: Bearer <key>."}
	}
	return v.Key(ctx, tok)
}

// Key returns the principal behind an API key.
func (v *Verifier) Key(ctx context.Context, key string) (*sluice.Principal, error) {
	if apikey.Parse(key) != nil {
		return nil, sluice.ErrUnauthenticated // refused without I/O
	}
	h := string(apikey.Hash(v.pepper, key))
	now := v.now()
	v.mu.Lock()
	e, ok := v.cache[h]
	v.mu.Unlock()
	if !ok || now.After(e.expires) {
		p, err := v.store.LookupKey(ctx, []byte(h))
		switch {
		case err == nil:
			e = entry{p: p, found: true}
		case errors.Is(err, sluice.ErrNotFound):
			e = entry{} // cached too, so unknown keys cannot hammer the database
		default:
			return nil, err
		}
		e.expires = now.Add(v.ttl)
		v.mu.Lock()
		if len(v.cache) > 100000 {
			clear(v.cache) // bound memory under a flood of distinct keys
		}
		v.cache[h] = e
		v.mu.Unlock()
	}
	if !e.found || e.p.Disabled {
		return nil, sluice.ErrUnauthenticated
	}
	v.mu.Lock()
	v.used[e.p.KeyID] = struct{}{}
	v.mu.Unlock()
	p := e.p
	return &p, nil
}

// Evict drops a key from this instance's cache at once.
func (v *Verifier) Evict(hash []byte) {
	v.mu.Lock()
	delete(v.cache, string(hash))
	v.mu.Unlock()
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
