//go:build !shrinkwrap

package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, rt, id := e.user("life")
	if me := e.must(200, "GET", "/auth/v1/me", access, nil); me["user_id"] != id || me["role"] != "user" || me["tier"] != "free" {
		t.Fatalf("me: %v", me)
	}
	s := e.must(200, "POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": rt})
	e.must(200, "GET", "/auth/v1/me", s["access_token"].(string), nil)
	e.must(204, "POST", "/auth/v1/logout", "", map[string]string{"refresh_token": s["refresh_token"].(string)})
	if st, _ := e.call("POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": s["refresh_token"].(string)}); st != 401 {
		t.Fatalf("refresh after logout = %d", st)
	}

	// The logout ended that login's access tokens too (issue 14).
	if st, _ := e.call("GET", "/auth/v1/me", s["access_token"].(string), nil); st != 401 {
		t.Fatalf("access token after logout = %d, want 401", st)
	}

	// Signing key rotation: tokens signed by the retired key stay valid until
	// they expire, and the JWKS publishes both keys meanwhile.
	access, _, _ = e.user("life1")
	admin, _ := e.adminKey()
	oldKid, _ := decodeJWT(t, access)
	e.must(200, "POST", "/auth/v1/admin/signing-keys/rotate", admin, nil)
	a2, _, _ := e.user("life2")
	newKid, _ := decodeJWT(t, a2)
	if oldKid["kid"] == newKid["kid"] {
		t.Fatal("rotation did not change the kid")
	}
	e.must(200, "GET", "/auth/v1/me", access, nil)
	waitAccepted(t, e, a2)
	jwks := jsonString(e.must(200, "GET", "/auth/.well-known/jwks.json", "", nil))
	for _, k := range []any{oldKid["kid"], newKid["kid"]} {
		if !strings.Contains(jwks, k.(string)) {
			t.Errorf("JWKS lacks %v: %s", k, jwks)
		}
	}
}

func TestRefreshDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "auth:\n  session:\n    refresh_enabled: false\n")
	email := testenv.Name("norefresh") + "@example.com"
	e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "long enough pw"})
	s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "long enough pw"})
	if _, ok := s["refresh_token"]; ok {
		t.Fatal("refresh token issued with refresh disabled")
	}
}

func TestKeyManagement(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, _ := e.user("keys")
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	created := e.must(201, "POST", "/auth/v1/keys", access, map[string]any{"name": "ci", "scopes": []string{"inference:execute"},
		"models": []string{e.models[0]}, "expires_at": exp})
	key, id := created["key"].(string), created["id"].(string)
	if apikey.Parse(key) != nil || !strings.HasPrefix(key, created["prefix"].(string)) {
		t.Fatalf("created key: %v", created)
	}
	list := jsonString(e.must(200, "GET", "/auth/v1/keys", access, nil))
	if strings.Contains(list, key) || !strings.Contains(list, `"name":"ci"`) || !strings.Contains(list, `"expires_at":`+itoa(exp.Unix())) {
		t.Fatalf("list: %s", list)
	}
	e.must(200, "GET", "/v1/models", key, nil)

	// Rotation without overlap: the old key stops at once, the new one works
	// and keeps the scopes and models.
	rot := e.must(201, "POST", "/auth/v1/keys/"+id+"/rotate", access, map[string]any{"overlap_seconds": 0})
	newKey := rot["key"].(string)
	waitRefused(t, e, key)
	if out := e.must(200, "GET", "/auth/v1/me", newKey, nil); len(out["models"].([]any)) != 1 {
		t.Fatalf("rotated key lost its allowlist: %v", out)
	}
	// Rotation with the default overlap: both work.
	rot2 := e.must(201, "POST", "/auth/v1/keys/"+rot["id"].(string)+"/rotate", access, nil)
	e.must(200, "GET", "/v1/models", newKey, nil)
	e.must(200, "GET", "/v1/models", rot2["key"].(string), nil)

	// The audit log has the story, and no secret.
	var n int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action IN ('key.create','key.rotate')`).Scan(&n) //nolint:errcheck
	if n != 3 {
		t.Errorf("audit rows for key create/rotate = %d, want 3", n)
	}
	var leaks int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE detail::text LIKE '%'||$1||'%' OR detail::text LIKE '%password%'`,
		key[10:]).Scan(&leaks) //nolint:errcheck
	if leaks != 0 {
		t.Error("a secret reached the audit log")
	}
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE audit_log SET outcome = 'ok'`); err == nil {
		t.Error("audit_log accepted an UPDATE")
	}
	if _, err := e.db.Pool.Exec(context.Background(), `DELETE FROM audit_log`); err == nil {
		t.Error("audit_log accepted a DELETE")
	}
	admin, _ := e.adminKey()
	if out := e.must(200, "GET", "/auth/v1/admin/audit?limit=5", admin, nil); len(out["data"].([]any)) != 5 {
		t.Errorf("admin audit read: %v", out)
	}
}

func itoa(n int64) string { return strings.TrimSpace(jsonString(n)) }

func TestPepperRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	u, _ := e.db.CreateUser(ctx, testenv.Name("pep")+"@example.com", "", "free", "user")
	old := []byte("the-old-pepper-0123456789abcdef0123456789")
	k, _ := apikey.New()
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Hash: apikey.Hash(old, k), Prefix: apikey.Display(k)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.call("GET", "/v1/models", k, nil); st != 401 {
		t.Fatalf("key under an unknown pepper = %d", st)
	}
	cfg := *e.cfg
	cfg.Env.KeyPepperPrevious = string(old)
	v := app.NewVerifier(&cfg, e.db, e.deps.Log)
	if _, err := v.Key(ctx, k); err != nil {
		t.Fatalf("key under the previous pepper: %v", err)
	}
	if _, _, err := e.db.LookupKeyAny(ctx, [][]byte{apikey.Hash([]byte(testenv.Pepper), k)}); err != nil {
		t.Fatalf("key not rehashed under the current pepper: %v", err)
	}
}

func TestAccountDeletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	email := testenv.Name("del") + "@example.com"
	u := e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "delete me please"})
	id := u["id"].(string)
	access := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "delete me please"})["access_token"].(string)
	key, _ := e.key(access, map[string]any{})
	e.must(200, "GET", "/v1/models", key, nil)
	ev := sluice.UsageEvent{JobID: testenv.Name("job"), UserID: id, Model: "m", Status: sluice.JobSucceeded,
		Usage: sluice.Usage{PromptTokens: 1, CompletionTokens: 2}, CreatedAt: time.Now(), EndedAt: time.Now()}
	if _, err := e.db.InsertUsage(ctx, []sluice.UsageEvent{ev}); err != nil {
		t.Fatal(err)
	}
	// A stored job: its prompt (and later result) must go with the account.
	job := &sluice.Job{ID: rkey.NewJobID(e.models[0]), UserID: id, Model: e.models[0], Endpoint: sluice.EndpointChat,
		Body: []byte(`{"messages":[{"role":"user","content":"my secret prompt"}]}`), Priority: 2}
	if err := e.deps.Queue.Enqueue(ctx, job, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.call("DELETE", "/auth/v1/me", access, map[string]string{"password": "wrong password"}); st != 403 {
		t.Fatalf("deletion without re-authentication = %d", st)
	}
	e.must(204, "DELETE", "/auth/v1/me", access, map[string]string{"password": "delete me please"})
	waitRefused(t, e, key)
	waitRefused(t, e, access)
	if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "delete me please"}); st != 401 {
		t.Errorf("login after deletion = %d", st)
	}
	var stored string
	e.db.Pool.QueryRow(ctx, `SELECT email FROM users WHERE id = $1`, id).Scan(&stored) //nolint:errcheck
	if strings.Contains(stored, email) {
		t.Errorf("email kept after deletion: %s", stored)
	}
	if rows, _ := e.db.UsageForUser(ctx, id); len(rows) != 1 {
		t.Errorf("usage kept for accounting: %d rows, want 1", len(rows))
	}
	if js, err := e.deps.Queue.Get(ctx, job.ID, ""); err == nil {
		t.Errorf("the deleted account's stored job is still there: %+v", js)
	}
	// The address is free again.
	e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "a new account"})
}
