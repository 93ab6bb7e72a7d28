//go:build !shrinkwrap

package auth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// env is one test's platform: the real router (auth under /auth, submit
// under /v1) on its own PostgreSQL schema, with real Redis.
type env struct {
	t      *testing.T
	cfg    *config.Config
	db     *postgres.DB
	deps   *app.Deps
	h      http.Handler
	models []string
	addr   string // this test's client address, so abuse counters do not collide
}

// randomAddr is a client address of its own (abuse counters live in Redis
// across runs).
func randomAddr() string {
	b := make([]byte, 3)
	rand.Read(b) //nolint:errcheck
	return fmt.Sprintf("10.%d.%d.%d", b[0], b[1], b[2])
}

func newEnv(t *testing.T, extraYAML string) *env {
	t.Helper()
	a, b := testenv.Name("auth-a"), testenv.Name("auth-b")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - name: %s
    - name: %s
%s`, a, b, extraYAML)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.KeyPepper = testenv.Pepper
	db := pgtest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rdb := testenv.Redis(t)
	d := &app.Deps{Config: cfg, Log: log, DB: db, Redis: rdb, Queue: app.NewQueue(cfg, rdb), Verifier: app.NewVerifier(cfg, db, log)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d.Verifier.Subscribed(ctx, rdb)
	return &env{t: t, cfg: cfg, db: db, deps: d, h: devstack.Router(d), models: []string{a, b}, addr: randomAddr()}
}

// call sends a request from addr (default: the env's address) and decodes the JSON answer.
func (e *env) call(method, path, cred string, body any, addr ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	r := httptest.NewRequest(method, path, rd)
	r.RemoteAddr = e.addr + ":5000"
	if len(addr) > 0 {
		r.RemoteAddr = addr[0] + ":5000"
	}
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out) //nolint:errcheck // 204s have no body
	return w.Code, out
}

// must asserts a status and returns the body.
func (e *env) must(want int, method, path, cred string, body any) map[string]any {
	e.t.Helper()
	st, out := e.call(method, path, cred, body)
	if st != want {
		e.t.Fatalf("%s %s = %d %v, want %d", method, path, st, out, want)
	}
	return out
}

// user signs up and logs in a fresh user, returning its access token, refresh token and id.
func (e *env) user(prefix string) (access, refresh, id string) {
	e.t.Helper()
	email := testenv.Name(prefix) + "@example.com"
	u := e.must(201, "POST", "/auth/v1/signup", "", map[string]string{"email": email, "password": "correct horse battery"})
	s := e.must(200, "POST", "/auth/v1/login", "", map[string]string{"email": email, "password": "correct horse battery"})
	return s["access_token"].(string), s["refresh_token"].(string), u["id"].(string)
}

// key creates an API key with the given request body for cred.
func (e *env) key(cred string, req map[string]any) (key, id string) {
	e.t.Helper()
	k := e.must(201, "POST", "/auth/v1/keys", cred, req)
	return k["key"].(string), k["id"].(string)
}

func errCode(out map[string]any) string {
	eo, _ := out["error"].(map[string]any)
	c, _ := eo["code"].(string)
	return c
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
