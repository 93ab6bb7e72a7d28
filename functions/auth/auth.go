// Package auth is the identity function. This first version answers who a
// credential belongs to; sign-up, sessions, MFA, OIDC, key management and the
// admin API are built on the same verifier (see docs/API.md for what exists).
package auth

import (
	"log/slog"
	"net/http"

	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Deps is what the auth function needs.
type Deps struct {
	Config   *config.Config
	Log      *slog.Logger
	Verifier *authn.Verifier
}

// New returns the auth function's handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/me", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Verifier.Authenticate(r.Context(), r)
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "principal", "user_id": p.UserID,
			"email": p.Email, "role": p.Role, "tier": p.Tier, "key_id": p.KeyID,
			"permissions": d.Config.Permissions(p.Role)})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "auth", mux)
}

var handle = app.Lazy(func(d *app.Deps) http.Handler {
	return New(Deps{Config: d.Config, Log: d.Log, Verifier: d.Verifier})
})

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }
