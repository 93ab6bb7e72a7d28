// Package billing is the billing-webhook function: Stripe events in,
// subscriptions and the credit ledger out. Until Stripe is configured it
// answers every event with a clear 503 so Stripe keeps retrying and nothing
// is lost (Stripe retries for three days).
package billing

import (
	"log/slog"
	"net/http"
	"os"

	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Deps is what the billing-webhook function needs.
type Deps struct {
	Log *slog.Logger
}

// New returns the billing-webhook handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, &sluice.Error{Kind: sluice.KindUnavailable, Code: sluice.CodeServiceUnavailable,
			Message: "Stripe billing is not configured on this deployment; the event was not processed."})
	})
	return httpserve.Middleware(d.Log, "billing-webhook", mux)
}

// Handle is the OpenFaaS entry point. It needs no database until Stripe is
// wired in, so it opens none.
func Handle(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }

var handler = standalone(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
