package console_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/console"
)

// TestHandler: the pages, config.json with the bases, the headers that keep
// the pages to their own origin, and the redirects.
func TestHandler(t *testing.T) {
	t.Parallel()
	cfg := console.Config{AuthBase: "/function/auth", APIBase: "", BillingBase: "/function/billing-webhook", UsageBase: "/function/usage-rollup"}
	h := console.Handler("/console/", cfg)
	get := func(path, accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := get("/console/", "text/html")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<script type="module" src="app.js">`) {
		t.Fatalf("index: %d %.200s", w.Code, w.Body.String())
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	w = get("/console/config.json", "")
	var got console.Config
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got != cfg {
		t.Fatalf("config.json: %v %s", err, w.Body.String())
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("config.json is cached: %q", w.Header().Get("Cache-Control"))
	}
	for _, f := range []string{"app.js", "api.js", "ui.js", "chart.js", "style.css"} {
		if w := get("/console/"+f, ""); w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Errorf("%s: %d", f, w.Code)
		}
	}
	if w := get("/console/nope.js", ""); w.Code != http.StatusNotFound {
		t.Errorf("a missing file: %d", w.Code)
	}
	r := httptest.NewRequest(http.MethodPost, "/console/", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	if w := get("/console", "text/html"); w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != "/console/" {
		t.Errorf("/console: %d %q", w.Code, w.Header().Get("Location"))
	}
}

// TestWantsHTML: only a browser's GET of "/" goes to the console; API
// clients keep their JSON 404.
func TestWantsHTML(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		method, path, accept string
		want                 bool
	}{
		{"GET", "/", "text/html,application/xhtml+xml,*/*;q=0.8", true},
		{"GET", "/", "application/json", false},
		{"GET", "/", "", false},
		{"POST", "/", "text/html", false},
		{"GET", "/v2/x", "text/html", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		r.Header.Set("Accept", c.accept)
		if got := console.WantsHTML(r); got != c.want {
			t.Errorf("%s %s %q: %v, want %v", c.method, c.path, c.accept, got, c.want)
		}
	}
}
