// Package console is Sluice's web console: plain static files (HTML, ES
// modules, CSS, hand-made SVG charts) embedded in the binary. `sluice dev`
// serves them at /console/; a deployment can copy console/static next to
// the functions and write its own config.json (see README, "Web console").
// The pages talk only to the functions' public APIs.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// Static is the console's files (index.html at the root), for tests and tools.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the folder
	}
	return sub
}

// Config is config.json: where the console finds each function's API.
// Each base is prepended to the function's own paths (/v1/..., the auth
// function's /v1/login...).
type Config struct {
	// AuthBase reaches the auth function: "/auth" in `sluice dev`,
	// "/function/auth" behind an OpenFaaS gateway.
	AuthBase string `json:"auth_base"`
	// APIBase reaches /v1/... (submit, usage-rollup and the billing
	// routes): "" when one gateway routes them, as `sluice dev` does.
	APIBase string `json:"api_base"`
	// BillingBase reaches the billing-webhook function's /v1/billing/...
	// checkout, portal and plans routes; "" means APIBase.
	BillingBase string `json:"billing_base"`
	// UsageBase reaches the usage-rollup function's /v1/usage,
	// /v1/billing/balance, /v1/billing/invoices and /v1/admin/revenue;
	// "" means APIBase.
	UsageBase string `json:"usage_base"`
}

// DevConfig is how `sluice dev` routes the functions (internal/devstack).
var DevConfig = Config{AuthBase: "/auth"}

// Handler serves the console under prefix (e.g. "/console/") with cfg as
// its config.json. Pages are cached briefly; config.json never, so a
// changed deployment is seen at once.
func Handler(prefix string, cfg Config) http.Handler {
	conf, _ := json.Marshal(cfg) // plain strings: cannot fail
	static := http.FileServerFS(Static())
	return http.StripPrefix(strings.TrimSuffix(prefix, "/"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		// No third-party requests, no framing, no inline script: the pages
		// need nothing else, and this stops a stolen-token XSS from phoning home.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.URL.Path == "" {
			http.Redirect(w, r, prefix, http.StatusMovedPermanently)
			return
		}
		if r.URL.Path == "/config.json" {
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.Write(conf) //nolint:errcheck // the client went away
			return
		}
		h.Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	}))
}

// WantsHTML reports whether a request for "/" comes from a browser, which
// the dev server sends to the console instead of a JSON 404.
func WantsHTML(r *http.Request) bool {
	return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		strings.Contains(r.Header.Get("Accept"), "text/html")
}
