// Package devstack runs the whole platform in one process for `sluice dev`
// and the end-to-end tests: the four functions mounted the way an OpenFaaS
// gateway mounts them, friendly routes, the worker, and embedded PostgreSQL,
// Redis and simulator engines where none are configured.
package devstack

import (
	"net/http"

	"github.com/sluice-ai/sluice/console"
	"github.com/sluice-ai/sluice/functions/auth"
	billing "github.com/sluice-ai/sluice/functions/billing-webhook"
	"github.com/sluice-ai/sluice/functions/submit"
	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Router serves the functions as an OpenFaaS gateway would
// (/function/<name>/...) plus the friendly routes: /v1/... → submit
// (/v1/usage, /v1/billing/{balance,invoices}, /v1/admin/revenue →
// usage-rollup; /v1/billing/{checkout,portal,plans} → billing-webhook), /auth/... → auth, /webhooks/stripe →
// billing-webhook, /console/ → the web console (and a browser's "/" is
// sent there); and /metrics, /healthz, /readyz, at the top and under
// each function's prefix, as each function serves them in OpenFaaS.
func Router(d *app.Deps) http.Handler {
	fns := map[string]http.Handler{
		"submit": submit.New(submit.Deps{Config: d.Config, Log: d.Log, Queue: d.Queue, Verifier: d.Verifier, Admission: d.Admission, Objects: d.Objects,
			Responses: d.DB, Batches: d.DB, Files: batch.OpenBlobs(d.Config)}),
		"auth":            auth.New(auth.Deps{Config: d.Config, Log: d.Log, DB: d.DB, Redis: d.Redis, Queue: d.Queue, Verifier: d.Verifier, Objects: d.Objects}),
		"billing-webhook": billing.New(billing.DepsFrom(d)),
		"usage-rollup":    rollup.New(rollup.DepsFrom(d)),
	}
	mux := http.NewServeMux()
	for name, h := range fns {
		h = d.Serve(h)
		mux.Handle("/function/"+name+"/", http.StripPrefix("/function/"+name, h))
		mux.Handle("/function/"+name, http.StripPrefix("/function/"+name, h))
	}
	mux.Handle("/v1/", fns["submit"])
	mux.Handle("/v1/usage", fns["usage-rollup"])
	// Billing: Checkout, the portal and plans belong to billing-webhook;
	// balances, statements and revenue are read from the rollups.
	mux.Handle("/v1/billing/checkout", fns["billing-webhook"])
	mux.Handle("/v1/billing/portal", fns["billing-webhook"])
	mux.Handle("/v1/billing/plans", fns["billing-webhook"])
	mux.Handle("/v1/billing/", fns["usage-rollup"])
	mux.Handle("/v1/admin/revenue", fns["usage-rollup"])
	mux.Handle("/auth/", http.StripPrefix("/auth", fns["auth"]))
	mux.Handle("/webhooks/stripe", fns["billing-webhook"])
	mux.Handle("/console/", console.Handler("/console/", console.DevConfig))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if console.WantsHTML(r) {
			http.Redirect(w, r, "/console/", http.StatusFound)
			return
		}
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return d.Serve(mux)
}
