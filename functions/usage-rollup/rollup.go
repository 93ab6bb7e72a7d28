// Package rollup is the usage-rollup function. This first version serves a
// user's own usage rows (GET /v1/usage) and has the scheduled trigger
// (POST /, and RunScheduled for Lambda's EventBridge schedule); rollups and
// Stripe meter reporting build on the same table.
package rollup

import (
	"context"
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
	// The scheduled trigger: cron-connector POSTs an empty body here (see
	// openfaas.yml). The gateway's Ingress exposes only /v1, so this is not
	// reachable from the internet.
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		rep, err := RunScheduled(r.Context(), d.DB)
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		d.Log.InfoContext(r.Context(), "usage-rollup: scheduled run", slog.Int64("rows", rep.Rows), slog.Int64("tokens", rep.Tokens))
		openai.WriteJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "usage-rollup", mux)
}

// ScheduledReport is what one scheduled run found.
type ScheduledReport struct {
	Object string `json:"object"` // "usage.scheduled_run"
	Rows   int64  `json:"usage_rows"`
	Tokens int64  `json:"tokens"`
}

// RunScheduled is the scheduled entry point (OpenFaaS cron-connector, a Lambda
// EventBridge schedule): one place both triggers call. For now it counts the
// recorded usage rows and their tokens; hourly/daily rollups and Stripe meter
// reporting belong here when they are built.
func RunScheduled(ctx context.Context, db *postgres.DB) (ScheduledReport, error) {
	t, err := db.UsageTotals(ctx)
	if err != nil {
		return ScheduledReport{}, err
	}
	return ScheduledReport{Object: "usage.scheduled_run", Rows: t.Rows, Tokens: t.Tokens}, nil
}

var handle = app.Lazy(func(d *app.Deps) http.Handler {
	return New(Deps{Log: d.Log, DB: d.DB, Verifier: d.Verifier})
})

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }
