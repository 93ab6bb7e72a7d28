//go:build !shrinkwrap

package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Issue 14's findings, one test each: every one failed on the code before
// the fix (see the report) and passes now.

// callVia sends a request whose socket peer is peer and whose
// X-Forwarded-For header lines are xff.
func (e *env) callVia(method, path, cred string, body any, peer string, xff ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	r := httptest.NewRequest(method, path, rd)
	r.RemoteAddr = peer + ":5000"
	for _, x := range xff {
		r.Header.Add("X-Forwarded-For", x)
	}
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out) //nolint:errcheck
	return w.Code, out
}

// docAddr is a fresh address of the IPv6 documentation range: never in a
// trusted range, and its abuse counters are its own across runs.
func docAddr() string {
	b := strings.Split(randomAddr(), ".")
	return "2001:db8::" + b[1] + ":" + b[2] + ":" + b[3]
}

// adminUser creates an admin with a password (through the admin API) and
// returns its email and password.
func (e *env) adminUser(adminKey string) (email, pw string) {
	e.t.Helper()
	email, pw = testenv.Name("adm")+"@example.com", "admin password 1"
	e.must(201, "POST", "/auth/v1/admin/users", adminKey, map[string]any{"email": email, "password": pw, "role": "admin"})
	return email, pw
}

// TestFinding1TrustedProxies (must show 2): behind a trusted proxy the
// abuse limits key on the forwarded client, so an attacker's failed logins
// lock only the attacker's address; the victim, from another address, logs
// in; the audit log records both forwarded addresses. A spoofed header from
// an untrusted peer changes nothing.
func TestFinding1TrustedProxies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "server:\n  trusted_proxies: [\"127.0.0.1/32\", \"10.255.0.0/16\"]\n")
	email := testenv.Name("victim") + "@example.com"
	e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "victim password 1"})
	attacker, victim := docAddr(), docAddr()
	var statuses []int
	for range 12 {
		st, _ := e.callVia("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "wrong guess"},
			"127.0.0.1", "6.6.6.6", attacker+", 10.255.0.9") // a client-written entry, then the ingress
		statuses = append(statuses, st)
	}
	st, _ := e.callVia("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "victim password 1"},
		"127.0.0.1", victim+", 10.255.0.9")
	t.Logf("attacker %s: 12 failed logins via the proxy -> %v", attacker, statuses)
	t.Logf("victim %s via the same proxy -> %d", victim, st)
	if statuses[11] != 429 || statuses[0] != 401 {
		t.Errorf("attacker's logins = %v, want 401s then 429", statuses)
	}
	if st != 200 {
		t.Fatalf("victim's login from another forwarded address = %d, want 200", st)
	}
	var nAttacker, nVictim int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE remote = $1), count(*) FILTER (WHERE remote = $2)
		FROM audit_log WHERE action = 'session.login'`, attacker, victim).Scan(&nAttacker, &nVictim) //nolint:errcheck
	t.Logf("audit log: %d session.login rows from %s, %d from %s", nAttacker, attacker, nVictim, victim)
	if nAttacker != 12 || nVictim != 1 {
		t.Errorf("audit rows by forwarded address: attacker %d (want 12), victim %d (want 1)", nAttacker, nVictim)
	}
	// An untrusted peer cannot pick its address by writing the header.
	spoofer := randomAddr()
	for strings.HasPrefix(spoofer, "10.255.") { // a trusted proxy's range
		spoofer = randomAddr()
	}
	var last int
	for i := range 7 {
		last, _ = e.callVia("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "wrong guess"},
			spoofer, "203.0.113."+itoa(int64(i)))
	}
	t.Logf("untrusted peer %s rotating X-Forwarded-For: 7th failed login -> %d", spoofer, last)
	if last != 429 {
		t.Errorf("untrusted peer rotating X-Forwarded-For = %d on the 7th failure, want 429", last)
	}
}

// TestFinding2RefreshKeepsMFAState: a password-only admin login never
// becomes an MFA session by refreshing; the MFA state is the family's, in
// the database. (Before: a refresh token starting "rt_m" — 1 in 64 — was
// taken as MFA; 300 rotations found one with probability 99.1%.)
func TestFinding2RefreshKeepsMFAState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	admin, _ := e.adminKey()
	email, pw := e.adminUser(admin)
	s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw})
	rt := s["refresh_token"].(string)
	for i := range 300 {
		n := e.must(200, "POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": rt})
		rt = n["refresh_token"].(string)
		if _, c := decodeJWT(t, n["access_token"].(string)); c["mfa"] == true {
			t.Fatalf("refresh %d (token %q...) turned a password-only login into an MFA session", i+1, rt[:5])
		}
		if i%50 == 0 {
			if st, _ := e.call("GET", "/auth/v1/admin/users", n["access_token"].(string), nil); st != 403 {
				t.Fatalf("refreshed password-only admin session listed users: %d", st)
			}
		}
	}
	// An MFA login keeps its MFA state through refreshes.
	tok := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw})["access_token"].(string)
	en := e.must(200, "POST", "/auth/v1/me/mfa/totp", tok, map[string]string{"password": pw})
	secret := en["secret"].(string)
	awayFromTOTPStepEdge()
	code, _ := totp.GenerateCode(secret, time.Now().Add(-30*time.Second))
	e.must(200, "POST", "/auth/v1/me/mfa/totp/confirm", tok, map[string]string{"totp_code": code})
	code, _ = totp.GenerateCode(secret, time.Now())
	m := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": code})
	n := e.must(200, "POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": m["refresh_token"].(string)})
	e.must(200, "GET", "/auth/v1/admin/users", n["access_token"].(string), nil)
}

// userKey stores a key for a user directly (as if created earlier) with
// the given scopes.
func (e *env) userKey(userID string, scopes []string) (key, id string) {
	e.t.Helper()
	k, _ := apikey.New()
	ak, err := e.db.CreateKey(context.Background(), postgres.NewKey{UserID: userID, Hash: apikey.Hash([]byte(testenv.Pepper), k),
		Prefix: apikey.Display(k), Scopes: scopes})
	if err != nil {
		e.t.Fatal(err)
	}
	return k, ak.ID
}

// TestFinding3KeyLimitsCannotEscape: a key an admin limited to 2 rpm
// mints a child, which is held to 2 rpm; the key clearing its own limit
// stays at 2; raising it is refused; only an admin loosens it.
func TestFinding3KeyLimitsCannotEscape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	admin, _ := e.adminKey()
	_, _, uid := e.user("lim")
	k1, k1ID := e.userKey(uid, []string{"inference:execute", "keys:write"})
	e.must(200, "PATCH", "/auth/v1/admin/keys/"+k1ID, admin, map[string]any{"requests_per_minute": 2})
	e.waitLimits(k1, sluice.Limits{RequestsPerMinute: 2})

	child := e.must(201, "POST", "/auth/v1/keys", k1, map[string]any{"scopes": []string{"inference:execute"}})
	p, err := e.deps.Verifier.Credential(context.Background(), child["key"].(string))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("child of a 2-rpm key: effective requests_per_minute %d", p.Limits.RequestsPerMinute)
	if p.Limits.RequestsPerMinute != 2 {
		t.Errorf("child key of a 2 rpm key has requests_per_minute %d, want 2", p.Limits.RequestsPerMinute)
	}

	st, _ := e.call("PATCH", "/auth/v1/keys/"+k1ID, k1, map[string]any{"requests_per_minute": nil})
	if st != 200 {
		t.Fatalf("clearing its own limit = %d", st)
	}
	e.waitLimits(k1, sluice.Limits{RequestsPerMinute: 2}) // cleared falls back to the admin's ceiling
	if st, out := e.call("PATCH", "/auth/v1/keys/"+k1ID, k1, map[string]any{"requests_per_minute": 1000}); st != 403 {
		t.Errorf("a key raising its own limit = %d %v, want 403", st, out)
	}
	// The owner's session cannot lift the admin's ceiling either.
	sess := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": emailOf(t, e, uid), "password": "correct horse battery"})
	if st, _ := e.call("PATCH", "/auth/v1/keys/"+k1ID, sess["access_token"].(string), map[string]any{"requests_per_minute": 1000}); st != 403 {
		t.Errorf("the owner raising an admin's limit = %d, want 403", st)
	}
	// Only an admin loosens it.
	e.must(200, "PATCH", "/auth/v1/admin/keys/"+k1ID, admin, map[string]any{"requests_per_minute": nil})
	e.waitLimits(k1, sluice.Limits{})
}

func emailOf(t *testing.T, e *env, uid string) string {
	var email string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT email FROM users WHERE id = $1`, uid).Scan(&email); err != nil {
		t.Fatal(err)
	}
	return email
}

// TestFinding4KeyManagementNeedsPermission (must show 3, first figure): a
// key scoped to inference can neither create, revoke, rotate nor change
// keys (403); a key given keys:write can; sessions manage their own.
func TestFinding4KeyManagementNeedsPermission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, _ := e.user("scoped")
	scoped, scopedID := e.key(access, map[string]any{"scopes": []string{"inference:execute"}})
	_, otherID := e.key(access, map[string]any{})
	unscoped, _ := e.key(access, map[string]any{})
	st, out := e.call("POST", "/auth/v1/keys", scoped, map[string]any{})
	t.Logf("key scoped to inference: POST /v1/keys -> %d %s", st, errCode(out))
	if st != 403 {
		t.Errorf("scoped key creating a key = %d, want 403", st)
	}
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/auth/v1/keys/" + otherID}, {"POST", "/auth/v1/keys/" + otherID + "/rotate"},
		{"PATCH", "/auth/v1/keys/" + scopedID}, {"DELETE", "/auth/v1/keys/" + scopedID},
	} {
		var body any
		if c.method == "PATCH" {
			body = map[string]any{"requests_per_minute": nil}
		}
		if st, _ := e.call(c.method, c.path, scoped, body); st != 403 {
			t.Errorf("scoped key %s %s = %d, want 403", c.method, c.path, st)
		}
	}
	if st, _ := e.call("POST", "/auth/v1/keys", unscoped, map[string]any{}); st != 403 {
		t.Errorf("a user's unscoped key (role without keys:write) creating a key = %d, want 403", st)
	}
	mgr, _ := e.key(access, map[string]any{"scopes": []string{"inference:execute", "keys:write"}})
	k := e.must(201, "POST", "/auth/v1/keys", mgr, map[string]any{"scopes": []string{"inference:execute"}})
	e.must(204, "DELETE", "/auth/v1/keys/"+k["id"].(string), mgr, nil)
}

// TestFinding6RollupTriggerNotAnonymous (must show 3, second figure): the
// scheduled trigger refuses anonymous callers; the scheduler's network, the
// rollup token and an admin credential run it.
func TestFinding6RollupTriggerNotAnonymous(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "usage_rollup:\n  scheduler_networks: [\"10.62.0.0/16\"]\n")
	e.cfg.Env.RollupToken = "rollup-token-for-the-test-0123456789"
	h := rollup.New(rollup.DepsFrom(e.deps))
	post := func(peer, cred string) int {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = peer + ":1234"
		if cred != "" {
			r.Header.Set("Authorization", "Bearer "+cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	access, _, _ := e.user("nonadmin")
	admin, _ := e.adminKey()
	got := map[string]int{
		"anonymous":           post("203.0.113.9", ""),
		"user session":        post("203.0.113.9", access),
		"wrong token":         post("203.0.113.9", "not-the-token"),
		"scheduler network":   post("10.62.3.4", ""),
		"rollup token":        post("203.0.113.9", e.cfg.Env.RollupToken),
		"admin key (usage:*)": post("203.0.113.9", admin),
	}
	t.Logf("POST /function/usage-rollup/: %v", got)
	want := map[string]int{"anonymous": 401, "user session": 403, "wrong token": 401, "scheduler network": 200,
		"rollup token": 200, "admin key (usage:*)": 200}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %d, want %d", k, got[k], w)
		}
	}
}

// TestFinding7Smaller: /v1/admin/status is under the admin-MFA rule; the
// rule follows permissions ("*" in a custom role), not the role's name;
// admin-created e-mails are normalised (and collisions listed); a logout
// and a disable end access tokens at once.
func TestFinding7Smaller(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `auth:
  rbac:
    roles: [admin, developer, user, ops]
    permissions:
      ops: ["*"]
`)
	admin, _ := e.adminKey()
	email, pw := e.adminUser(admin)
	s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw})
	if st, out := e.call("GET", "/v1/admin/status", s["access_token"].(string), nil); st != 403 || errCode(out) != "mfa_required" {
		t.Errorf("GET /v1/admin/status, admin session without MFA = %d %v, want 403 mfa_required", st, out)
	}
	e.must(200, "GET", "/v1/admin/status", admin, nil) // an admin key (from the CLI or an MFA session) passes

	opsEmail := testenv.Name("ops") + "@example.com"
	e.must(201, "POST", "/auth/v1/admin/users", admin, map[string]any{"email": opsEmail, "password": "ops password 12", "role": "ops"})
	ops := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": opsEmail, "password": "ops password 12"})
	if st, out := e.call("GET", "/auth/v1/admin/users", ops["access_token"].(string), nil); st != 403 || errCode(out) != "mfa_required" {
		t.Errorf("custom role with * without MFA = %d %v, want 403 mfa_required", st, out)
	}

	mixed := "  " + strings.ToUpper(testenv.Name("Mixed")) + "@Example.COM "
	u := e.must(201, "POST", "/auth/v1/admin/users", admin, map[string]any{"email": mixed, "password": "mixed password 1"})
	norm := strings.ToLower(strings.TrimSpace(mixed))
	if u["email"] != norm {
		t.Errorf("stored email %q, want %q", u["email"], norm)
	}
	e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": norm, "password": "mixed password 1"})
	if st, _ := e.call("POST", "/auth/v1/signup", "", map[string]string{"email": norm, "password": "someone else 12"}); st != 409 {
		t.Errorf("sign-up of the lowercase address of an admin-created user = %d, want 409", st)
	}
	// Rows the migration could not normalise are listed for an admin.
	dup := testenv.Name("dup") + "@example.com"
	if _, err := e.db.Pool.Exec(context.Background(), `INSERT INTO users (email, subscription_tier, role) VALUES ($1, 'free', 'user'), ($2, 'free', 'user')`,
		dup, strings.ToUpper(dup)); err != nil {
		t.Fatal(err)
	}
	cs := e.must(200, "GET", "/auth/v1/admin/email-collisions", admin, nil)
	found := false
	for _, c := range cs["data"].([]any) {
		if c.(map[string]any)["email"] == dup && len(c.(map[string]any)["user_ids"].([]any)) == 2 {
			found = true
		}
	}
	if !found {
		t.Errorf("email collisions %v lack %s", cs, dup)
	}

	// Logout ends the access token at once (TestLogoutEndsAccessTokens
	// measures it across instances); so does disabling the user.
	a, rt, id := e.user("logout")
	e.must(204, "POST", "/auth/v1/logout", "", map[string]string{"refresh_token": rt})
	if st, _ := e.call("GET", "/auth/v1/me", a, nil); st != 401 {
		t.Errorf("access token right after logout = %d, want 401", st)
	}
	a2 := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": emailOf(t, e, id), "password": "correct horse battery"})["access_token"].(string)
	e.must(200, "PATCH", "/auth/v1/admin/users/"+id, admin, map[string]any{"disabled": true})
	e.must(200, "PATCH", "/auth/v1/admin/users/"+id, admin, map[string]any{"disabled": false})
	if st, _ := e.call("GET", "/auth/v1/me", a2, nil); st != 401 {
		t.Errorf("access token issued before a disable (then re-enable) = %d, want 401", st)
	}
}

// TestLogoutEndsAccessTokens (must show 3, third figure): after logout
// the access token is refused on a second instance within a second, and on
// an instance started after the logout (it never saw the message).
func TestLogoutEndsAccessTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	second := app.NewVerifier(e.cfg, e.db, slog.New(slog.DiscardHandler))
	second.Subscribed(ctx, e.deps.Redis)
	access, refresh, _ := e.user("logoutfig")
	if _, err := second.Credential(ctx, access); err != nil {
		t.Fatalf("second instance before logout: %v", err)
	}
	e.must(204, "POST", "/auth/v1/logout", "", map[string]string{"refresh_token": refresh})
	loggedOut := time.Now()
	var refusedAfter time.Duration
	for {
		if _, err := second.Credential(ctx, access); err != nil {
			refusedAfter = time.Since(loggedOut)
			break
		}
		if time.Since(loggedOut) > 5*time.Second {
			t.Fatal("second instance still accepts the logged-out token after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	third := app.NewVerifier(e.cfg, e.db, slog.New(slog.DiscardHandler))
	third.Subscribed(ctx, e.deps.Redis)
	_, err3 := third.Credential(ctx, access)
	t.Logf("logged-out access token: refused by a second instance %v after the logout returned; by an instance started later: %v",
		refusedAfter.Round(time.Microsecond), err3 != nil)
	if refusedAfter > time.Second {
		t.Errorf("second instance refused it after %v, want within 1s", refusedAfter)
	}
	if err3 == nil {
		t.Error("an instance started after the logout accepts the token")
	}
}

// TestMFAEnrolmentQRCode: enrolment returns the QR code as an inline PNG
// drawn by the server (no third-party image service sees the secret).
func TestMFAEnrolmentQRCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, _ := e.user("qr")
	en := e.must(200, "POST", "/auth/v1/me/mfa/totp", access, map[string]string{"password": "correct horse battery"})
	uri, _ := en["qr_code"].(string)
	b64, ok := strings.CutPrefix(uri, "data:image/png;base64,")
	if !ok {
		t.Fatalf("qr_code = %.40q, want an inline PNG data URI", uri)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("qr_code is not a PNG: %v", err)
	}
	// A QR code has dark modules and a light quiet zone.
	bnd := img.Bounds()
	dark := 0
	for y := bnd.Min.Y; y < bnd.Max.Y; y += 4 {
		for x := bnd.Min.X; x < bnd.Max.X; x += 4 {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				dark++
			}
		}
	}
	if r, _, _, _ := img.At(bnd.Min.X, bnd.Min.Y).RGBA(); bnd.Dx() < 100 || dark == 0 || r < 0x8000 {
		t.Errorf("qr_code image %v with %d dark samples does not look like a QR code", bnd, dark)
	}
	t.Logf("qr_code: %dx%d PNG, %d bytes, %d dark samples", bnd.Dx(), bnd.Dy(), len(raw), dark)
}

// TestFinding5DeletionErasesInFlight: deleting an account cancels its
// in-flight job, erases its result stream and response-cache entries, and
// a worker still streaming the job cannot recreate the stream afterwards.
func TestFinding5DeletionErasesInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	ctx := context.Background()
	email := testenv.Name("inflight") + "@example.com"
	u := e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "delete me please"})
	id := u["id"].(string)
	access := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "delete me please"})["access_token"].(string)
	job := &sluice.Job{ID: rkey.NewJobID(e.models[0]), UserID: id, Model: e.models[0], Endpoint: sluice.EndpointChat,
		Body: []byte(`{"messages":[{"role":"user","content":"my secret prompt"}]}`), Priority: 2, Stream: true}
	if err := e.deps.Queue.Enqueue(ctx, job, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The worker has started streaming it.
	if err := e.deps.Queue.Chunks(ctx, job.ID, []string{`{"choices":[{"delta":{"content":"secret answer"}}]}`}, true); err != nil {
		t.Fatal(err)
	}
	cacheKey := "sluice:{u:" + id + "}:cache:" + strings.Repeat("ab", 32)
	e.deps.Redis.HSet(ctx, cacheKey, "result", "a cached secret answer", "usage", "{}")
	e.must(204, "DELETE", "/auth/v1/me", access, map[string]string{"password": "delete me please"})

	// The worker, not yet told, appends another chunk.
	if err := e.deps.Queue.Chunks(ctx, job.ID, []string{`{"choices":[{"delta":{"content":" more"}}]}`}, false); err != nil {
		t.Fatal(err)
	}
	streams := e.deps.Redis.Exists(ctx, rkey.ResultKey(job.ID)).Val()
	cache := e.deps.Redis.Exists(ctx, cacheKey).Val()
	h := e.deps.Redis.HGetAll(ctx, rkey.JobKey(job.ID)).Val()
	t.Logf("after deletion and a late chunk: result stream exists %d, cache entry exists %d, job record %v", streams, cache, h)
	if streams != 0 {
		t.Errorf("the worker recreated the erased result stream (ttl %v)", e.deps.Redis.PTTL(ctx, rkey.ResultKey(job.ID)).Val())
	}
	if cache != 0 {
		t.Error("the deleted account's response-cache entry is still there")
	}
	if h["body"] != "" || h["result"] != "" {
		t.Errorf("the job record still holds content: %v", h)
	}
	if len(h) > 0 && h["status"] != string(sluice.JobCancelled) {
		t.Errorf("the in-flight job was not cancelled: status %q", h["status"])
	}
}

// awayFromTOTPStepEdge waits for the next 30-second TOTP step when less than
// 15 s of this one are left: a test that generates codes for the previous,
// current and next steps and then logs in several times (slow hashing
// under load) must not see the step roll over and its codes leave the
// window of one step either side.
func awayFromTOTPStepEdge() {
	if into := time.Now().Unix() % 30; into >= 15 {
		time.Sleep(time.Duration(30-into) * time.Second)
	}
}
