//go:build !shrinkwrap

package auth_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
)

// TestAdminUserSearch: GET /auth/v1/admin/users?q= finds users by a
// case-insensitive part of the email, treats LIKE's wildcards as text, and
// stays admin-only.
func TestAdminUserSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	admin, _ := e.adminKey()
	tag := testenv.Name("find")
	for _, local := range []string{tag + "-one", tag + "_two", "other-" + testenv.Name("x")} {
		e.must(201, "POST", "/auth/v1/admin/users", admin, map[string]string{"email": local + "@example.com"})
	}
	emails := func(q string) []string {
		out := e.must(200, "GET", "/auth/v1/admin/users?q="+url.QueryEscape(q), admin, nil)
		var got []string
		for _, u := range out["data"].([]any) {
			got = append(got, u.(map[string]any)["email"].(string))
		}
		return got
	}
	if got := emails(strings.ToUpper(tag)); len(got) != 2 {
		t.Errorf("q=%s: %v, want the two %s users", strings.ToUpper(tag), got, tag)
	}
	if got := emails(tag + "_"); len(got) != 1 || got[0] != tag+"_two@example.com" {
		t.Errorf(`q with "_": %v, want only the literal match`, got)
	}
	if got := emails(tag + "%"); len(got) != 0 {
		t.Errorf(`q with "%%": %v, want none`, got)
	}
	if got := emails(""); len(got) < 4 {
		t.Errorf("no q: %d users, want all (at least 4)", len(got))
	}
	if st, _ := e.call("GET", "/auth/v1/admin/users?q="+strings.Repeat("a", 300), admin, nil); st != 400 {
		t.Errorf("an over-long q: %d, want 400", st)
	}
	user, _, _ := e.user("searcher")
	if st, _ := e.call("GET", "/auth/v1/admin/users?q="+tag, user, nil); st != 403 {
		t.Errorf("a user searching users: %d, want 403", st)
	}
}

// TestModelPrices: /v1/models carries each model's configured per-token
// price in integer micro-dollars (the console's models page), and none for
// a model without a price.
func TestModelPrices(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	priced := e.models[0]
	if e.cfg.Pricing == nil {
		e.cfg.Pricing = map[string]config.ModelPrice{}
	}
	e.cfg.Pricing[priced] = config.ModelPrice{InputTokens: 100, OutputTokens: 200} // $0.0001 and $0.0002 a token
	delete(e.cfg.Pricing, e.models[1])
	admin, _ := e.adminKey()
	out := e.must(200, "GET", "/v1/models", admin, nil)
	seen := 0
	for _, m := range out["data"].([]any) {
		mo := m.(map[string]any)
		p, has := mo["pricing"].(map[string]any)
		switch mo["id"] {
		case priced:
			seen++
			if !has || p["input_micros_per_token"] != float64(100) || p["output_micros_per_token"] != float64(200) {
				t.Errorf("%s pricing = %v, want 100/200 micros per token", priced, mo["pricing"])
			}
		case e.models[1]:
			seen++
			if has {
				t.Errorf("%s has a price %v; none is configured", e.models[1], p)
			}
		}
	}
	if seen != 2 {
		t.Errorf("/v1/models listed %d of the two models: %v", seen, out)
	}
}
