//go:build !shrinkwrap

package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// waitLimits waits until the verifier (cached, evicted by broadcast) gives a
// credential the limit overrides want; the bound only stops a broken build
// from hanging.
func (e *env) waitLimits(key string, want sluice.Limits) {
	e.t.Helper()
	var got sluice.Limits
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		p, err := e.deps.Verifier.Credential(context.Background(), key)
		if err != nil {
			e.t.Fatal(err)
		}
		if got = p.Limits; got == want {
			return
		}
	}
	e.t.Fatalf("verifier limits = %+v, want %+v", got, want)
}

// Admins set and clear user and key limits (validated, audited, applied by
// every instance's verifier at once); a user cannot raise their own.
func TestLimitOverrides(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, uid := e.user("limits")
	key, keyID := e.key(access, map[string]any{"name": "k"})
	e.waitLimits(key, sluice.Limits{})
	admin, _ := e.adminKey()

	// Mass assignment: a user cannot set their own limits through any route.
	for _, c := range []struct {
		method, path string
		cred         string
		body         map[string]any
		want         int
	}{
		{"PATCH", "/auth/v1/admin/users/" + uid, access, map[string]any{"requests_per_minute": 100000}, 403},
		{"PATCH", "/auth/v1/admin/users/" + uid, key, map[string]any{"overage_cap_micros": 1}, 403},
		{"PATCH", "/auth/v1/admin/keys/" + keyID, access, map[string]any{"requests_per_minute": 100000}, 403},
		// Above the free tier's 10 rpm: a key may only be tighter than its owner.
		{"POST", "/auth/v1/keys", access, map[string]any{"requests_per_minute": 11}, 403},
		{"PATCH", "/auth/v1/keys/" + keyID, access, map[string]any{"requests_per_minute": 11}, 403},
		{"PATCH", "/auth/v1/keys/" + keyID, key, map[string]any{"concurrency": 5}, 403}, // tier: 4
		// Users have no cap of their own to set, and signup takes no limits.
		{"PATCH", "/auth/v1/keys/" + keyID, access, map[string]any{"overage_cap_micros": 1}, 400},
		{"POST", "/auth/v1/signup", "", map[string]any{"email": "x@example.com", "password": "correct horse battery",
			"requests_per_minute": 1000}, 400},
	} {
		if st, out := e.call(c.method, c.path, c.cred, c.body); st != c.want {
			t.Fatalf("%s %s %v = %d %v, want %d", c.method, c.path, c.body, st, out, c.want)
		}
	}
	e.waitLimits(key, sluice.Limits{})

	// Within the owner's limits, the owner may tighten a key.
	e.must(200, "PATCH", "/auth/v1/keys/"+keyID, access, map[string]any{"requests_per_minute": 3})
	e.waitLimits(key, sluice.Limits{RequestsPerMinute: 3})

	// An admin validates, sets and clears; the verifier follows at once.
	for _, bad := range []map[string]any{{"requests_per_minute": -1}, {"concurrency": "many"}, {"tokens_per_minute": 1.5}} {
		if st, _ := e.call("PATCH", "/auth/v1/admin/users/"+uid, admin, bad); st != 400 {
			t.Fatalf("admin PATCH %v = %d, want 400", bad, st)
		}
	}
	u := e.must(200, "PATCH", "/auth/v1/admin/users/"+uid, admin, map[string]any{"requests_per_minute": 500, "concurrency": 20,
		"overage_cap_micros": 5_000_000})
	if l := u["limits"].(map[string]any); l["requests_per_minute"] != 500.0 || l["overage_cap_micros"] != 5e6 {
		t.Fatalf("user limits = %v", u)
	}
	// A session sees the user's own overrides.
	e.waitLimits(access, sluice.Limits{RequestsPerMinute: 500, Concurrency: 20, OverageCap: 5_000_000})
	// The key's own 3 rpm still beats the user's 500.
	e.waitLimits(key, sluice.Limits{RequestsPerMinute: 3, Concurrency: 20, OverageCap: 5_000_000})
	// An admin may make a key looser than its owner's tier.
	e.must(200, "PATCH", "/auth/v1/admin/keys/"+keyID, admin, map[string]any{"requests_per_minute": 1000})
	e.waitLimits(key, sluice.Limits{RequestsPerMinute: 1000, Concurrency: 20, OverageCap: 5_000_000})
	// Clearing (null) falls back to the next level.
	e.must(200, "PATCH", "/auth/v1/admin/keys/"+keyID, admin, map[string]any{"requests_per_minute": nil})
	e.must(200, "PATCH", "/auth/v1/admin/users/"+uid, admin, map[string]any{"concurrency": nil})
	e.waitLimits(key, sluice.Limits{RequestsPerMinute: 500, OverageCap: 5_000_000})

	var n int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE target IN ($1, $2)
		AND action IN ('admin.user_update', 'admin.key_limits', 'key.limits') AND outcome = 'ok'`, uid, keyID).Scan(&n) //nolint:errcheck
	if n != 5 {
		t.Errorf("audit rows for limit changes = %d, want 5", n)
	}
}

// A key is renamed by its owner (or an admin) with PATCH; another user's
// key is not found, an over-long name is refused, and the change is audited.
func TestKeyRename(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, _ := e.user("rename")
	_, keyID := e.key(access, map[string]any{"name": "old"})
	other, _, _ := e.user("rename-other")

	k := e.must(200, "PATCH", "/auth/v1/keys/"+keyID, access, map[string]any{"name": "ci deploys"})
	if k["name"] != "ci deploys" {
		t.Fatalf("renamed key = %v", k)
	}
	if st, _ := e.call("PATCH", "/auth/v1/keys/"+keyID, other, map[string]any{"name": "mine now"}); st != 404 {
		t.Fatalf("another user's rename = %d, want 404", st)
	}
	long := make([]byte, 101)
	for i := range long {
		long[i] = 'x'
	}
	if st, _ := e.call("PATCH", "/auth/v1/keys/"+keyID, access, map[string]any{"name": string(long)}); st != 400 {
		t.Fatalf("101-character name = %d, want 400", st)
	}
	// The name survives a patch that leaves it out.
	k = e.must(200, "PATCH", "/auth/v1/keys/"+keyID, access, map[string]any{"requests_per_minute": 2})
	if k["name"] != "ci deploys" {
		t.Fatalf("name after a limits patch = %v", k["name"])
	}
	admin, _ := e.adminKey()
	k = e.must(200, "PATCH", "/auth/v1/admin/keys/"+keyID, admin, map[string]any{"name": "renamed by admin"})
	if k["name"] != "renamed by admin" {
		t.Fatalf("admin rename = %v", k)
	}
	var n int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE target = $1
		AND action IN ('admin.key_limits', 'key.limits') AND outcome = 'ok' AND detail ? 'name'`, keyID).Scan(&n) //nolint:errcheck
	if n != 2 {
		t.Errorf("audit rows for the renames = %d, want 2", n)
	}
}
