// Package rollup is the usage-rollup function. This first version serves a
// user's own usage rows (GET /v1/usage); scheduled rollups and Stripe meter
// reporting build on the same table.
package rollup

import (
	"log/slog"
	"net/http"

	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Deps is what the usage-rollup function needs.
type Deps struct {
	Log      *slog.Logger
	DB       *postgres.DB
	Verifier *authn.Verifier
}

type usageRow struct {
	JobID            string `json:"job_id"`
	Model            string `json:"model"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	Status           string `json:"status"`
	LatencyMS        int64  `json:"latency_ms"`
}

// New returns the usage-rollup handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		p, err := d.Verifier.Authenticate(r.Context(), r)
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		rows, err := d.DB.UsageForUser(r.Context(), p.UserID) // the caller's own rows only
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		out := make([]usageRow, len(rows))
		for i, u := range rows {
			out[i] = usageRow(u)
		}
		openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "usage-rollup", mux)
}

var handle = app.Lazy(func(d *app.Deps) http.Handler {
	return New(Deps{Log: d.Log, DB: d.DB, Verifier: d.Verifier})
})

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }
