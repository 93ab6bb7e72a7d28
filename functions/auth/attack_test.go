//go:build !shrinkwrap

package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp/totp"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// adminKey creates an admin the way the operator CLI does and returns its key.
func (e *env) adminKey() (key, userID string) {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.db.CreateUser(ctx, testenv.Name("admin")+"@example.com", "", "free", "admin")
	if err != nil {
		e.t.Fatal(err)
	}
	k, _ := apikey.New()
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Hash: apikey.Hash([]byte(testenv.Pepper), k), Prefix: apikey.Display(k)}); err != nil {
		e.t.Fatal(err)
	}
	return k, u.ID
}

// forge signs claims with key and method, with a kid header unless kid is "".
func forge(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(m, c)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	s, err := tk.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// decodeJWT splits a token into its header and claims.
func decodeJWT(t *testing.T, tok string) (map[string]any, jwt.MapClaims) {
	t.Helper()
	var c jwt.MapClaims
	tk, _, err := jwt.NewParser().ParseUnverified(tok, &c)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Header, c
}

// TestAttacks is the attack suite: each case is a credential or request an
// attacker controls, and the refusal it must meet.
func TestAttacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	access, _, uid := e.user("victim")
	victimKey, victimKeyID := e.key(access, map[string]any{"name": "victim"})
	atkAccess, _, _ := e.user("attacker")
	atkKey, _ := e.key(atkAccess, map[string]any{"name": "mine"})
	hdr, claims := decodeJWT(t, access)
	kid := hdr["kid"].(string)
	jwks := e.must(200, "GET", "/auth/.well-known/jwks.json", "", nil)
	x, _ := base64.RawURLEncoding.DecodeString(jwks["keys"].([]any)[0].(map[string]any)["x"].(string))
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range claims {
			c[k] = v
		}
		mut(c)
		return c
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noneKid := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}()
	parts := strings.Split(access, ".")
	otherClaims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"00000000-0000-0000-0000-000000000001"}`))

	// Credentials that must all be refused with 401 on an authenticated route.
	for name, cred := range map[string]string{
		"malformed key":           "sk-sluice-short",
		"oversized credential":    "sk-sluice-" + strings.Repeat("A", 10000),
		"many dots":               strings.Repeat(".", 5000),
		"wrong prefix":            "sk-other-" + victimKey[len("sk-sluice-"):],
		"upper-case prefix":       strings.ToUpper(victimKey[:10]) + victimKey[10:],
		"bad checksum":            victimKey[:len(victimKey)-1] + flip(victimKey[len(victimKey)-1]),
		"well-formed unknown key": mustNewKey(t),
		"alg none":                none,
		"alg none with kid":       noneKid,
		"HS256 keyed with the public key (alg confusion)": forge(t, jwt.SigningMethodHS256, x, kid, claims),
		"ES256 unpinned algorithm":                        forge(t, jwt.SigningMethodES256, ec, kid, claims),
		"missing kid":                                     forge(t, jwt.SigningMethodEdDSA, foreign, "", claims),
		"unknown kid, foreign key":                        forge(t, jwt.SigningMethodEdDSA, foreign, "nope", claims),
		"right kid, foreign key":                          forge(t, jwt.SigningMethodEdDSA, foreign, kid, claims),
		"missing exp":                                     forge(t, jwt.SigningMethodEdDSA, foreign, kid, with(func(c jwt.MapClaims) { delete(c, "exp") })),
		"tampered subject":                                parts[0] + "." + otherClaims + "." + parts[2],
		"signature stripped":                              parts[0] + "." + parts[1] + ".",
		"garbage token":                                   "eyJhbGciOiJFZERTQSJ9.%%%.###",
	} {
		if st, out := e.call("GET", "/auth/v1/me", cred, nil); st != 401 {
			t.Errorf("%s: GET /v1/me = %d %v, want 401", name, st, out)
		}
		if st, _ := e.call("GET", "/v1/models", cred, nil); st != 401 {
			t.Errorf("%s: GET /v1/models (submit) = %d, want 401", name, st)
		}
	}

	// Claims checks need the real signing key: issue tokens through the
	// signer's own verifier config but with wrong claims, using a test-only
	// signing key the store publishes.
	t.Run("exp iss aud iat", func(t *testing.T) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		testKid := "test-" + testenv.Name("kid")
		if err := e.db.RotateSigningKey(context.Background(), postgres.SigningKey{KID: testKid, Public: pub, Private: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		authn.SigningKeysChanged(context.Background(), e.deps.Redis) //nolint:errcheck
		good := forge(t, jwt.SigningMethodEdDSA, priv, testKid, with(func(c jwt.MapClaims) {}))
		waitAccepted(t, e, good) // control: the message is asynchronous
		for name, c := range map[string]jwt.MapClaims{
			"expired":          with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }),
			"no exp":           with(func(c jwt.MapClaims) { delete(c, "exp") }),
			"wrong iss":        with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }),
			"no iss":           with(func(c jwt.MapClaims) { delete(c, "iss") }),
			"wrong aud":        with(func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }),
			"no aud":           with(func(c jwt.MapClaims) { delete(c, "aud") }),
			"issued in future": with(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(10 * time.Minute).Unix() }),
			"no subject":       with(func(c jwt.MapClaims) { delete(c, "sub") }),
			"unknown subject":  with(func(c jwt.MapClaims) { c["sub"] = "00000000-0000-0000-0000-000000000001" }),
		} {
			if st, out := e.call("GET", "/auth/v1/me", forge(t, jwt.SigningMethodEdDSA, priv, testKid, c), nil); st != 401 {
				t.Errorf("%s: %d %v, want 401", name, st, out)
			}
		}
	})

	t.Run("refresh token reuse revokes the family", func(t *testing.T) {
		_, rt, _ := e.user("reuse")
		s1 := e.must(200, "POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": rt})
		if st, out := e.call("POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": rt}); st != 401 {
			t.Fatalf("reused refresh token = %d %v", st, out)
		}
		if st, _ := e.call("POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": s1["refresh_token"].(string)}); st != 401 {
			t.Fatal("the successor of a reused token still works: the family was not revoked")
		}
		if st, _ := e.call("POST", "/auth/v1/refresh", "", map[string]string{"refresh_token": "rt_" + strings.Repeat("A", 43)}); st != 401 {
			t.Fatal("made-up refresh token accepted")
		}
	})

	t.Run("mass assignment", func(t *testing.T) {
		st, _ := e.call("POST", "/auth/v1/signup", "", map[string]any{"email": testenv.Name("m") + "@example.com", "password": "long enough pw", "role": "admin"})
		if st != 400 {
			t.Errorf("signup with role = %d, want 400", st)
		}
		st, _ = e.call("POST", "/auth/v1/signup", "", map[string]any{"email": testenv.Name("m") + "@example.com", "password": "long enough pw", "tier": "enterprise"})
		if st != 400 {
			t.Errorf("signup with tier = %d, want 400", st)
		}
		if st, _ := e.call("POST", "/auth/v1/keys", atkAccess, map[string]any{"name": "x", "user_id": uid}); st != 400 {
			t.Errorf("key for another user_id = %d, want 400", st)
		}
		if st, _ := e.call("POST", "/auth/v1/keys", atkAccess, map[string]any{"scopes": []string{"*"}}); st != 403 {
			t.Errorf("user minting a * key = %d, want 403", st)
		}
		if st, _ := e.call("POST", "/auth/v1/keys", atkAccess, map[string]any{"scopes": []string{"model:write"}}); st != 403 {
			t.Errorf("user minting a model:write key = %d, want 403", st)
		}
	})

	t.Run("cross-user objects", func(t *testing.T) {
		if st, _ := e.call("DELETE", "/auth/v1/keys/"+victimKeyID, atkAccess, nil); st != 404 {
			t.Errorf("revoking another's key = %d, want 404", st)
		}
		if st, _ := e.call("POST", "/auth/v1/keys/"+victimKeyID+"/rotate", atkAccess, nil); st != 404 {
			t.Errorf("rotating another's key = %d, want 404", st)
		}
		if _, out := e.call("GET", "/auth/v1/keys", atkAccess, nil); strings.Contains(jsonString(out), victimKeyID) {
			t.Error("key list shows another user's key")
		}
		if st, _ := e.call("GET", "/v1/models", victimKey, nil); st != 200 {
			t.Error("victim key stopped working after the attacker's attempts")
		}
		job := e.must(202, "POST", "/v1/jobs", victimKey, map[string]any{"url": "/v1/chat/completions",
			"body": map[string]any{"model": e.models[0], "messages": []map[string]string{{"role": "user", "content": "hi"}}}})
		id := job["id"].(string)
		if st, _ := e.call("GET", "/v1/jobs/"+id, atkKey, nil); st != 404 {
			t.Errorf("reading another's job = %d, want 404", st)
		}
		if st, _ := e.call("DELETE", "/v1/jobs/"+id, atkKey, nil); st != 404 {
			t.Errorf("cancelling another's job = %d, want 404", st)
		}
		if _, out := e.call("GET", "/v1/usage", atkKey, nil); strings.Contains(jsonString(out), id) {
			t.Error("usage shows another user's job")
		}
	})

	t.Run("user on admin routes", func(t *testing.T) {
		for _, rt := range [][2]string{{"GET", "/auth/v1/admin/users"}, {"PATCH", "/auth/v1/admin/users/" + uid},
			{"DELETE", "/auth/v1/admin/users/" + uid}, {"GET", "/auth/v1/admin/users/" + uid + "/keys"},
			{"DELETE", "/auth/v1/admin/keys/" + victimKeyID}, {"GET", "/auth/v1/admin/audit"},
			{"POST", "/auth/v1/admin/signing-keys/rotate"}, {"POST", "/auth/v1/admin/users"}} {
			for _, cred := range []string{atkAccess, atkKey} {
				if st, _ := e.call(rt[0], rt[1], cred, `{"role":"admin"}`); st != 403 {
					t.Errorf("user %s %s = %d, want 403", rt[0], rt[1], st)
				}
			}
		}
		if _, out := e.call("GET", "/auth/v1/me", atkAccess, nil); out["role"] != "user" {
			t.Fatalf("attacker's role changed: %v", out)
		}
		var denied int
		e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'admin.denied'`).Scan(&denied) //nolint:errcheck
		if denied < 16 {
			t.Errorf("admin refusals audited: %d, want 16", denied)
		}
	})

	t.Run("key outside its scopes or models", func(t *testing.T) {
		readOnly, _ := e.key(access, map[string]any{"scopes": []string{"inference:execute"}, "models": []string{e.models[0]}})
		if st, out := e.call("POST", "/v1/chat/completions", readOnly, map[string]any{"model": e.models[1],
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}); st != 404 || errCode(out) != "model_not_found" {
			t.Errorf("key calling a model outside its allowlist = %d %v, want 404 model_not_found", st, out)
		}
		if st, _ := e.call("GET", "/v1/models/"+e.models[1], readOnly, nil); st != 404 {
			t.Errorf("key reading a model outside its allowlist = %d, want 404", st)
		}
		if _, out := e.call("GET", "/v1/models", readOnly, nil); len(out["data"].([]any)) != 1 {
			t.Errorf("model list shows models outside the allowlist: %v", out)
		}
		dev, _ := e.adminKey()
		modelRead, _ := e.key(dev, map[string]any{"scopes": []string{"model:read"}})
		if st, _ := e.call("POST", "/v1/chat/completions", modelRead, map[string]any{"model": e.models[0],
			"messages": []map[string]string{{"role": "user", "content": "hi"}}}); st != 403 {
			t.Errorf("model:read key running inference = %d, want 403", st)
		}
		if st, _ := e.call("GET", "/auth/v1/admin/users", modelRead, nil); st != 403 {
			t.Errorf("model:read key of an admin on admin routes = %d, want 403", st)
		}
		// A key without keys:write mints nothing (issue 14); one with it
		// cannot mint a stronger key: its child inherits the limits.
		if st, _ := e.call("POST", "/auth/v1/keys", readOnly, map[string]any{"name": "child"}); st != 403 {
			t.Errorf("inference-scoped key minting a key = %d, want 403", st)
		}
		mgr, _ := e.key(access, map[string]any{"scopes": []string{"inference:execute", "keys:write"}, "models": []string{e.models[0]}})
		child := e.must(201, "POST", "/auth/v1/keys", mgr, map[string]any{"name": "child"})
		if len(child["models"].([]any)) != 1 || len(child["scopes"].([]any)) != 2 {
			t.Errorf("child of a scoped key lost its limits: %v", child)
		}
		if st, _ := e.call("POST", "/auth/v1/keys", mgr, map[string]any{"models": []string{e.models[1]}}); st != 403 {
			t.Errorf("scoped key minting a key for another model = %d, want 403", st)
		}
	})

	t.Run("revoked, expired and disabled, inside the cache", func(t *testing.T) {
		a, _, id := e.user("revoke")
		k, kid := e.key(a, map[string]any{})
		e.must(200, "GET", "/v1/models", k, nil) // now cached
		e.must(204, "DELETE", "/auth/v1/keys/"+kid, a, nil)
		waitRefused(t, e, k)
		past := time.Now().Add(-time.Second)
		k2, _ := apikey.New()
		e.db.CreateKey(context.Background(), postgres.NewKey{UserID: id, Hash: apikey.Hash([]byte(testenv.Pepper), k2), Prefix: "x", ExpiresAt: &past}) //nolint:errcheck
		if st, _ := e.call("GET", "/v1/models", k2, nil); st != 401 {
			t.Errorf("expired key = %d, want 401", st)
		}
		k3, _ := e.key(a, map[string]any{})
		e.must(200, "GET", "/v1/models", k3, nil)
		e.must(200, "GET", "/auth/v1/me", a, nil)
		admin, _ := e.adminKey()
		e.must(200, "PATCH", "/auth/v1/admin/users/"+id, admin, map[string]any{"disabled": true})
		waitRefused(t, e, k3)
		waitRefused(t, e, a)
	})

	t.Run("admin session needs MFA", func(t *testing.T) {
		admin, _ := e.adminKey()
		email := testenv.Name("adm") + "@example.com"
		e.must(201, "POST", "/auth/v1/admin/users", admin, map[string]any{"email": email, "password": "admin password 1", "role": "admin"})
		s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "admin password 1"})
		if st, out := e.call("GET", "/auth/v1/admin/users", s["access_token"].(string), nil); st != 403 || errCode(out) != "mfa_required" {
			t.Errorf("admin session without MFA = %d %v, want 403 mfa_required", st, out)
		}
		if st, _ := e.call("POST", "/auth/v1/keys", s["access_token"].(string), map[string]any{}); st != 403 {
			t.Errorf("admin session without MFA minting a key = %d, want 403", st)
		}
	})

	t.Run("TOTP replay and brute force", func(t *testing.T) {
		email := testenv.Name("mfa") + "@example.com"
		pw := "mfa password 123"
		e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": pw})
		tok := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw})["access_token"].(string)
		en := e.must(200, "POST", "/auth/v1/me/mfa/totp", tok, map[string]string{"password": pw})
		secret := en["secret"].(string)
		awayFromTOTPStepEdge()
		now := time.Now()
		code0, _ := totp.GenerateCode(secret, now.Add(-30*time.Second))
		rc := e.must(200, "POST", "/auth/v1/me/mfa/totp/confirm", tok, map[string]string{"totp_code": code0})
		if st, out := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw}); st != 401 || errCode(out) != "mfa_required" {
			t.Fatalf("login without a code = %d %v, want 401 mfa_required", st, out)
		}
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": code0}); st != 401 {
			t.Error("the confirmation code was accepted again (replay)")
		}
		code1, _ := totp.GenerateCode(secret, now)
		s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": code1})
		if _, c := decodeJWT(t, s["access_token"].(string)); c["mfa"] != true {
			t.Error("MFA login token lacks the mfa claim")
		}
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": code1}); st != 401 {
			t.Error("TOTP code replayed")
		}
		code2, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
		for i := 0; i < 5; i++ {
			e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": "000000"}, randomAddr())
		}
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "totp_code": code2}); st != 429 {
			t.Errorf("after 5 wrong codes the right one = %d, want 429 (brute force limit)", st)
		}
		e.deps.Redis.Del(context.Background(), rkey.LimitKey("mfa", userIDOf(t, s["access_token"].(string)))) // the window, fast-forwarded
		codes := rc["recovery_codes"].([]any)
		e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "recovery_code": codes[0].(string)})
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": pw, "recovery_code": codes[0].(string)}); st != 401 {
			t.Error("recovery code used twice")
		}
	})

	t.Run("password guessing is limited without locking the owner out", func(t *testing.T) {
		email, guesser := testenv.Name("guess")+"@example.com", randomAddr()
		e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "the real password"})
		for i := 0; i < 5; i++ {
			if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "guess" + string(rune('a'+i)) + "xxxxx"}, guesser); st != 401 {
				t.Fatalf("guess %d = %d", i, st)
			}
		}
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "the real password"}, guesser); st != 429 {
			t.Errorf("6th attempt from the guessing address = %d, want 429", st)
		}
		if st, _ := e.call("POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "the real password"}, randomAddr()); st != 200 {
			t.Errorf("owner from their own address = %d, want 200 (no lock-out)", st)
		}
	})
}

func userIDOf(t *testing.T, tok string) string {
	_, c := decodeJWT(t, tok)
	return c["sub"].(string)
}

// waitRefused polls until cred is refused. Revocation is pushed, so this
// normally returns on the first try; the bound only keeps a broken build
// from hanging.
func waitRefused(t *testing.T, e *env, cred string) { t.Helper(); waitStatus(t, e, cred, 401) }

// waitAccepted polls until cred is accepted (a pushed key change arrived).
func waitAccepted(t *testing.T, e *env, cred string) { t.Helper(); waitStatus(t, e, cred, 200) }

func waitStatus(t *testing.T, e *env, cred string, want int) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(5 * time.Millisecond) {
		if st, _ := e.call("GET", "/auth/v1/me", cred, nil); st == want {
			return
		}
	}
	t.Fatalf("GET /v1/me never answered %d within 10s", want)
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func mustNewKey(t *testing.T) string {
	k, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
