package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestResponseCachePerKey: a key created with cache_responses on has its
// deterministic requests answered from the cache without the header (the
// hit billed as a cache entry, no engine run); a key with it off does not,
// even for a response already cached for its user; the header overrides
// the key both ways; PATCH /v1/keys/{id} turns it on at once, audited, and
// only for the key's owner.
func TestResponseCachePerKey(t *testing.T) {
	t.Parallel()
	// Sign-ups come from 127.0.0.1 in every test run on this Redis: the
	// per-address limit is not what this test is about.
	s := startStack(t, "auth:\n  identity:\n    limits:\n      signup_per_address: 100000\n")
	ctx := context.Background()
	email := "cachekey-" + s.models[0] + "@example.com"
	api := func(method, path, key, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
		return resp.StatusCode, out
	}
	// Keys are managed from a session (an API key needs keys:write): sign
	// up and log in as the user would.
	owner := s.session(t, email)
	st, on := api("POST", "/auth/v1/keys", owner, `{"name":"cached","cache_responses":true}`)
	if st != 201 || on["cache_responses"] != true {
		t.Fatalf("create with cache_responses: %d %v", st, on)
	}
	st, off := api("POST", "/auth/v1/keys", owner, `{"name":"plain"}`)
	if st != 201 || off["cache_responses"] != false {
		t.Fatalf("create without: %d %v", st, off)
	}
	onKey, offKey, offID := on["key"].(string), off["key"].(string), off["id"].(string)

	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"cache me per key"}],"max_tokens":5,"temperature":0}`, s.models[0])
	post := func(key, hdr string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", s.base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if hdr != "" {
			req.Header.Set("Sluice-Cache", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("chat: %d %s", resp.StatusCode, b)
		}
		return resp, string(b)
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// servedFromCache checks a hit the way the header-only cache test does:
	// a ledger row of kind cache and no usage row (no engine ran).
	servedFromCache := func(resp *http.Response) bool {
		t.Helper()
		id := resp.Header.Get("Sluice-Job-Id")
		if _, _, _, n := s.ledgerRow(t, id); n != 1 {
			t.Fatalf("job %s: %d ledger rows", id, n)
		}
		var kind string
		var rows int
		if err := conn.QueryRow(ctx, `SELECT kind, (SELECT count(*) FROM inference_requests WHERE job_id = $1)
			FROM credit_ledger WHERE job_id = $1`, id).Scan(&kind, &rows); err != nil {
			t.Fatal(err)
		}
		return kind == "cache" && rows == 0
	}

	// The opted-in key, no header: a miss that fills the cache, then a hit.
	r1, b1 := post(onKey, "")
	if r1.Header.Get("Sluice-Cache") != "miss" || servedFromCache(r1) {
		t.Fatalf("first request on the cached key: %v", r1.Header)
	}
	r2, b2 := post(onKey, "")
	if r2.Header.Get("Sluice-Cache") != "hit" || b2 != b1 || !servedFromCache(r2) {
		t.Fatalf("second request on the cached key: %v\n%s\n%s", r2.Header, b1, b2)
	}
	// Sluice-Cache: off on a request overrides the key.
	if r, _ := post(onKey, "off"); r.Header.Get("Sluice-Cache") != "" || servedFromCache(r) {
		t.Fatalf("header off on the cached key: %v", r.Header)
	}
	// The other key of the same user does not use the cache it could hit...
	if r, _ := post(offKey, ""); r.Header.Get("Sluice-Cache") != "" || servedFromCache(r) {
		t.Fatalf("key without caching: %v", r.Header)
	}
	// ...unless the request asks.
	if r, _ := post(offKey, "on"); r.Header.Get("Sluice-Cache") != "hit" || !servedFromCache(r) {
		t.Fatalf("header on, key without caching: %v", r.Header)
	}

	// Another user cannot change the key; its owner can, with effect at once.
	other := s.session(t, "cachekey-other-"+s.models[0]+"@example.com")
	if st, _ := api("PATCH", "/auth/v1/keys/"+offID, other, `{"cache_responses":true}`); st != 404 {
		t.Fatalf("another user's PATCH: %d, want 404", st)
	}
	if st, k := api("PATCH", "/auth/v1/keys/"+offID, owner, `{"cache_responses":"yes"}`); st != 400 {
		t.Fatalf("bad value: %d %v", st, k)
	}
	st, k := api("PATCH", "/auth/v1/keys/"+offID, owner, `{"cache_responses":true}`)
	if st != 200 || k["cache_responses"] != true {
		t.Fatalf("PATCH: %d %v", st, k)
	}
	if r, _ := post(offKey, ""); r.Header.Get("Sluice-Cache") != "hit" || !servedFromCache(r) {
		t.Fatalf("after the PATCH (the verifier's cache must not keep the old setting): %v", r.Header)
	}
	var detail map[string]any
	if err := conn.QueryRow(ctx, `SELECT detail FROM audit_log WHERE target = $1 AND action = 'key.limits' AND outcome = 'ok'`,
		offID).Scan(&detail); err != nil || detail["cache_responses"] != true {
		t.Fatalf("audit entry: %v %v", detail, err)
	}
}

// session signs a new user up through the auth function and returns a
// session's access token.
func (s *stack) session(t *testing.T, email string) string {
	t.Helper()
	const password = "a long enough test passphrase 7"
	body := fmt.Sprintf(`{"email":%q,"password":%q}`, email, password)
	for _, path := range []string{"/auth/v1/signup", "/auth/v1/login"} {
		resp, err := http.Post(s.base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, out)
		}
		if tok, _ := out["access_token"].(string); tok != "" {
			return tok
		}
	}
	t.Fatal("login returned no access_token")
	return ""
}
