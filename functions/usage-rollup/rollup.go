// Package rollup is the usage-rollup function. Its scheduled run (POST /,
// RunScheduled for Lambda's EventBridge schedule, and `sluice dev`'s own
// timer) folds raw usage into hourly and daily rollups, reports postpaid
// overage to Stripe Billing Meters through an outbox, and reconciles; its
// GET routes serve usage, balances, statements and revenue from them.
package rollup

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// PermBillingRead lets a role read anyone's usage, balance and statements
// (user_id=) and the revenue report. Every user reads their own without it.
const PermBillingRead = "billing:read"

// Deps is what the usage-rollup function needs.
type Deps struct {
	Config *config.Config
	Log    *slog.Logger
	DB     sluice.UsageStore
	// ReadDB serves the report reads (usage, statements, invoices,
	// revenue): the read replica while it is up and fresh enough
	// (postgres.Reports); nil means DB. Account and balance reads stay on
	// DB: they must be fresh.
	ReadDB   sluice.UsageReports
	Verifier *authn.Verifier
	// Stripe receives the meter events; nil (no STRIPE_SECRET_KEY) keeps
	// them pending in the outbox.
	Stripe sluice.UsageMeter
	// Telemetry records runs and reconciliation (sluice_rollup_*,
	// sluice_reconciliation_*); nil records nothing.
	Telemetry *telemetry.Telemetry
}

// DepsFrom builds Deps from the shared dependencies.
func DepsFrom(d *app.Deps) Deps {
	out := Deps{Config: d.Config, Log: d.Log, DB: d.DB, Verifier: d.Verifier, Stripe: stripe.Meter(d.Config),
		Telemetry: d.Telemetry}
	if d.ReadDB != nil { // a nil *postgres.Reports in the interface would not read as nil
		out.ReadDB = d.ReadDB
	}
	return out
}

func (d Deps) read() sluice.UsageReports {
	if d.ReadDB != nil {
		return d.ReadDB
	}
	return d.DB
}

// New returns the usage-rollup handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/usage", d.usage)
	mux.HandleFunc("GET /v1/billing/balance", d.balance)
	mux.HandleFunc("GET /v1/billing/invoices", d.invoices)
	mux.HandleFunc("GET /v1/admin/revenue", d.revenue)
	// The scheduled trigger: cron-connector POSTs an empty body here (see
	// openfaas.yml). Wherever /function/usage-rollup/ is reachable it
	// refuses anonymous callers (triggerAllowed).
	mux.HandleFunc("POST /{$}", func(w http.ResponseWriter, r *http.Request) {
		if err := d.triggerAllowed(r); err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		rep, err := RunScheduled(r.Context(), d)
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		openai.WriteJSON(w, http.StatusOK, rep)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "usage-rollup", mux, httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes()))
}

var handle = app.Lazy(func(d *app.Deps) http.Handler { return New(DepsFrom(d)) })

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }

// PermRollupRun lets an admin trigger the scheduled run by hand ("*"
// grants it).
const PermRollupRun = "usage:rollup"

// triggerAllowed admits the scheduled run's callers, and no one else:
//   - the OpenFaaS cron-connector, which sends no credential, by its
//     address (usage_rollup.scheduler_networks, after trusted_proxies);
//   - any scheduler that can send a header, with SLUICE_ROLLUP_TOKEN as a
//     bearer token;
//   - an admin's credential with usage:rollup (sessions under the
//     admin-MFA rule).
//
// Lambda's EventBridge schedule and `sluice dev` call RunScheduled
// directly, never over HTTP.
func (d Deps) triggerAllowed(r *http.Request) error {
	tok := authn.Bearer(r)
	if want := d.Config.Env.RollupToken; want != "" && tok != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1 {
		return nil
	}
	if a, err := netip.ParseAddr(httpserve.ClientAddr(r)); err == nil {
		for _, p := range d.Config.UsageRollup.SchedulerPrefixes() {
			if p.Contains(a.Unmap()) {
				return nil
			}
		}
	}
	if tok == "" || d.Verifier == nil {
		return &sluice.Error{Kind: sluice.KindUnauthenticated, Code: sluice.CodeInvalidAPIKey,
			Message: "The usage rollup runs on its schedule; a manual run needs a credential."}
	}
	p, err := d.Verifier.Require(r, d.Config.Permissions, PermRollupRun)
	if err != nil {
		return err
	}
	return authn.RequireAdminMFA(p, d.Config.Permissions(p.Role), d.Config.Auth.Identity.RequireMFAForAdmin)
}
