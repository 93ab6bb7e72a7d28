package authn_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

const pepper = "authn-test-pepper-0123456789abcdef0123"

func TestVerifier(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	u, _ := db.UpsertUser(ctx, "v@example.com", "pro", "developer")
	key, _ := apikey.New()
	k, err := db.CreateAPIKey(ctx, u.ID, "k", apikey.Hash([]byte(pepper), key), apikey.Display(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	ttl := 200 * time.Millisecond
	v := authn.New(db, []byte(pepper), ttl, nil)

	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	p, err := v.Authenticate(ctx, r)
	if err != nil || p.UserID != u.ID || p.KeyID != k.ID || p.Role != "developer" || p.Tier != "pro" {
		t.Fatalf("authenticate: %+v %v", p, err)
	}
	for name, hdr := range map[string]string{
		"no header":      "",
		"basic":          "Basic " + key,
		"malformed":      "Bearer sk-sluice-short",
		"other pepper":   "Bearer " + mustKey(t),
		"lower prefix":   "Bearer SK-SLUICE-" + key[10:],
		"trailing stuff": "Bearer " + key + "x",
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if hdr != "" {
			r.Header.Set("Authorization", hdr)
		}
		if _, err := v.Authenticate(ctx, r); sluice.KindOf(err) != sluice.KindUnauthenticated {
			t.Errorf("%s: %v, want unauthenticated", name, err)
		}
	}

	// last_used_at is written in a batch, not per request.
	var before *time.Time
	db.Pool.QueryRow(ctx, "SELECT last_used_at FROM api_keys WHERE id=$1", k.ID).Scan(&before) //nolint:errcheck
	if before != nil {
		t.Fatal("last_used_at written on the request path")
	}
	v.Flush(ctx)
	var after *time.Time
	db.Pool.QueryRow(ctx, "SELECT last_used_at FROM api_keys WHERE id=$1", k.ID).Scan(&after) //nolint:errcheck
	if after == nil {
		t.Fatal("flush did not record last use")
	}

	// A revoked key keeps working at most for the cache TTL.
	if _, err := db.RevokeKey(ctx, u.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		_, err := v.Key(ctx, key)
		if err != nil {
			if !errors.Is(err, sluice.ErrUnauthenticated) {
				t.Fatal(err)
			}
			break
		}
		if time.Since(revoked) > ttl+100*time.Millisecond {
			t.Fatalf("revoked key still works after %v (ttl %v)", time.Since(revoked), ttl)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustKey(t *testing.T) string {
	k, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRevokeKeyHereAtOnce: the instance that revokes a key refuses it from
// its next request on, without its own subscription's message (this
// verifier has none: before, it served the key from its cache until the
// message came back, or the cache TTL).
func TestRevokeKeyHereAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rdb := redistest.Client(t)
	u, _ := db.UpsertUser(ctx, "here@example.com", "pro", "developer")
	key, _ := apikey.New()
	k, err := db.CreateAPIKey(ctx, u.ID, "k", apikey.Hash([]byte(pepper), key), apikey.Display(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	v := authn.New(db, []byte(pepper), time.Hour, nil)
	if _, err := v.Key(ctx, key); err != nil {
		t.Fatal(err) // now cached for an hour
	}
	if _, err := db.RevokeKey(ctx, u.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if err := v.RevokeKey(ctx, rdb, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Key(ctx, key); !errors.Is(err, sluice.ErrUnauthenticated) {
		t.Fatalf("the revoking instance still accepts the key: %v", err)
	}
}
