//go:build !shrinkwrap

package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/authn"
)

// startProvider runs the zitadel/oidc example OpenID provider on a free
// port and returns its issuer. Its "web" client (secret "secret") may
// redirect to redirect.
func startProvider(t *testing.T, redirect string) string {
	t.Helper()
	bin := testenv.OIDCProvider(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port), "REDIRECT_URI="+redirect)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	issuer := fmt.Sprintf("http://localhost:%d/", port)
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(issuer + ".well-known/openid-configuration"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return issuer
			}
		}
	}
	t.Fatal("OpenID provider did not start")
	return ""
}

// login runs the authorization code flow as a browser would (the
// provider's own login form) and returns the ID token, an RS256 JWT signed
// with the provider's JWKS. The example provider's access tokens are opaque,
// so the ID token (aud = the client) is the JWT Sluice verifies here.
func login(t *testing.T, issuer, redirect, user string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := func(resp *http.Response, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if loc == "" {
			t.Fatalf("no redirect from %s: %s", resp.Request.URL, resp.Status)
		}
		u, _ := resp.Request.URL.Parse(loc)
		return u.String()
	}
	q := url.Values{"client_id": {"web"}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"s"}, "nonce": {"n"}}
	loginURL := next(c.Get(issuer + "auth?" + q.Encode()))
	lu, _ := url.Parse(loginURL)
	cb := next(c.PostForm(issuer+"login/username", url.Values{"username": {user}, "password": {"verysecure"},
		"id": {lu.Query().Get("authRequestID")}}))
	final, _ := url.Parse(next(c.Get(cb)))
	req, _ := http.NewRequest("POST", issuer+"oauth/token", strings.NewReader(url.Values{"grant_type": {"authorization_code"},
		"code": {final.Query().Get("code")}, "redirect_uri": {redirect}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("web", "secret")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
	}
	if err := jsonDecode(resp, &tok); err != nil || tok.IDToken == "" {
		t.Fatalf("token exchange: %s %v", resp.Status, err)
	}
	return tok.IDToken
}

func TestExternalOIDC(t *testing.T) {
	t.Parallel()
	redirect := "http://127.0.0.1:1/cb"
	issuer := startProvider(t, redirect)
	e := newEnv(t, fmt.Sprintf("auth:\n  identity:\n    oidc:\n      issuer: %q\n      audience: web\n", issuer))
	tok := login(t, issuer, redirect, "test-user2")

	me := e.must(200, "GET", "/auth/v1/me", tok, nil)
	if me["role"] != "user" || me["tier"] != "free" || me["key_id"] != "" {
		t.Fatalf("external principal: %v", me)
	}
	// Provisioned once, keyed by (issuer, subject): a second login is the same user.
	tok2 := login(t, issuer, redirect, "test-user2")
	if again := e.must(200, "GET", "/auth/v1/me", tok2, nil); again["user_id"] != me["user_id"] {
		t.Fatalf("second login provisioned another user: %v vs %v", again["user_id"], me["user_id"])
	}
	var n int
	e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM external_identities WHERE issuer = $1 AND subject = 'id2'`, issuer).Scan(&n) //nolint:errcheck
	if n != 1 {
		t.Fatalf("external identities for (issuer, id2) = %d, want 1", n)
	}
	// The external user uses Sluice like anyone: keys of its own.
	e.must(201, "POST", "/auth/v1/keys", tok, map[string]any{"name": "from-sso"})
	e.must(200, "GET", "/v1/models", tok, nil)

	// Tampering, another audience, and an admin disabling the user.
	parts := strings.Split(tok, ".")
	if st, _ := e.call("GET", "/auth/v1/me", parts[0]+"."+parts[1]+"."+strings.Repeat("A", len(parts[2])), nil); st != 401 {
		t.Errorf("forged signature = %d", st)
	}
	_, claims := decodeJWT(t, tok)
	hdr, _ := decodeJWT(t, tok)
	kid, _ := hdr["kid"].(string)
	jwksResp, err := http.Get(issuer + "keys")
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	jsonDecode(jwksResp, &set) //nolint:errcheck
	jwksResp.Body.Close()
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, forged := range map[string]string{
		"alg none with the provider's iss":            none,
		"HS256 keyed with the provider's RSA modulus": forge(t, jwt.SigningMethodHS256, []byte(set.Keys[0]["n"].(string)), kid, claims),
		"provider's iss, foreign key":                 forge(t, jwt.SigningMethodEdDSA, foreignKey(), kid, claims),
	} {
		if st, _ := e.call("GET", "/auth/v1/me", forged, nil); st != 401 {
			t.Errorf("%s = %d, want 401", name, st)
		}
	}
	other := newEnv(t, fmt.Sprintf("auth:\n  identity:\n    oidc:\n      issuer: %q\n      audience: another-client\n", issuer))
	if st, _ := other.call("GET", "/auth/v1/me", tok, nil); st != 401 {
		t.Errorf("token for another audience = %d", st)
	}
	admin, _ := e.adminKey()
	e.must(200, "PATCH", "/auth/v1/admin/users/"+me["user_id"].(string), admin, map[string]any{"disabled": true})
	waitRefused(t, e, tok)
}

func TestOIDCRoleMapping(t *testing.T) {
	t.Parallel()
	c := authn.OIDCConfig{Roles: map[string]string{"sluice-admin": "admin", "ml-eng": "developer"},
		RoleOrder: []string{"admin", "developer", "user"}, DefaultRole: "user"}
	for _, tc := range []struct {
		realm, client []string
		want          string
	}{
		{nil, nil, "user"},
		{[]string{"offline_access", "ml-eng"}, nil, "developer"},
		{[]string{"ml-eng"}, []string{"sluice-admin"}, "admin"},
		{[]string{"admin"}, nil, "user"}, // only mapped names count
	} {
		if got := c.MapRoles(tc.realm, tc.client); got != tc.want {
			t.Errorf("MapRoles(%v, %v) = %q, want %q", tc.realm, tc.client, got, tc.want)
		}
	}
}

func foreignKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}
