// Package billing is the billing-webhook function: Stripe events in
// (POST /webhooks/stripe), purchases out (POST /v1/billing/checkout: a
// Checkout Session for a tier or a credit pack; POST /v1/billing/portal: the
// customer portal), and the price list (GET /v1/billing/plans, public).
//
// A webhook is verified (current then previous secret, 300 s tolerance),
// then its id is recorded and its effects written in one PostgreSQL
// transaction: a duplicate is a no-op, a failure rolls back and answers 500
// so Stripe retries. The live counters in Redis and the verifiers' caches
// learn of a change after the commit; both steps are idempotent and are
// repeated when Stripe delivers the event again.
package billing

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// Deps is what the billing-webhook function needs. Stripe is nil when no
// secret key is configured: purchases then answer 503.
type Deps struct {
	Config *config.Config
	DB     sluice.BillingStore
	Redis  redis.UniversalClient
	// Queue cancels the jobs whose credit a clawback took back.
	Queue    *redisq.Queue
	Verifier *authn.Verifier
	Stripe   sluice.Payments
	Log      *slog.Logger
}

// maxWebhookBody bounds a webhook body; Stripe's events are far smaller.
const maxWebhookBody = 1 << 20

// New returns the billing-webhook handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/billing/plans", d.plans)
	mux.HandleFunc("POST /v1/billing/checkout", d.checkout)
	mux.HandleFunc("POST /v1/billing/portal", d.portal)
	mux.HandleFunc("POST /webhooks/stripe", d.webhook)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, d.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "billing-webhook", mux, httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes()))
}

// DepsFrom builds Deps from the shared dependencies.
func DepsFrom(d *app.Deps) Deps {
	return Deps{Config: d.Config, DB: d.DB, Redis: d.Redis, Queue: d.Queue, Verifier: d.Verifier, Stripe: stripe.Payments(d.Config), Log: d.Log}
}

var handle = app.Lazy(func(d *app.Deps) http.Handler { return New(DepsFrom(d)) })

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }

// plan is one row of GET /v1/billing/plans.
type plan struct {
	Kind              string `json:"kind"`
	Tier              string `json:"tier,omitempty"`
	MonthlyCostMicros *int64 `json:"monthly_cost_micros,omitempty"`
	IncludedTokens    *int64 `json:"included_tokens,omitempty"` // -1: unlimited
	Pack              string `json:"pack,omitempty"`
	AmountMicros      *int64 `json:"amount_micros,omitempty"`
}

// plans lists what can be bought: tiers with a Stripe price, credit packs.
func (d Deps) plans(w http.ResponseWriter, _ *http.Request) {
	out := []plan{}
	for _, name := range slices.Sorted(maps.Keys(d.Config.Billing.TierPrices)) {
		t, ok := d.Config.Tiers[name]
		if !ok || d.Config.Billing.TierPrices[name] == "" {
			continue
		}
		cost := t.MonthlyCost.Value
		inc := int64(-1)
		if t.IncludedCredits.Kind == config.Fixed {
			inc = t.IncludedCredits.Count()
		}
		out = append(out, plan{Kind: sluice.CheckoutSubscription, Tier: name, MonthlyCostMicros: &cost, IncludedTokens: &inc})
	}
	for _, p := range d.Config.Billing.CreditPacks {
		amt := int64(p.Amount)
		out = append(out, plan{Kind: sluice.CheckoutCredits, Pack: p.Name, AmountMicros: &amt})
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

// buyer authenticates a purchase: the account's owner, with a session or
// an unscoped key (a key scoped to some permissions buys nothing).
func (d Deps) buyer(r *http.Request) (*sluice.Principal, error) {
	p, err := d.Verifier.Require(r, d.Config.Permissions)
	if err != nil {
		return nil, err
	}
	if len(p.Scopes) > 0 {
		return nil, sluice.Errorf(sluice.KindPermissionDenied, sluice.CodePermissionDenied,
			"A scoped API key cannot manage billing; use the account's session or an unscoped key.")
	}
	return p, authn.Authorize(p, d.Config.Permissions(p.Role), sluice.PermInferenceExecute)
}

func (d Deps) stripeOff() error {
	return &sluice.Error{Kind: sluice.KindUnavailable, Code: sluice.CodeServiceUnavailable,
		Message: "Stripe billing is not configured on this deployment (STRIPE_SECRET_KEY is unset)."}
}

// customer returns the user's Stripe customer, creating it on first use.
func (d Deps) customer(ctx context.Context, userID string) (string, error) {
	u, err := d.DB.BillingUser(ctx, userID)
	if err != nil {
		return "", err
	}
	if u.StripeCustomer != "" {
		return u.StripeCustomer, nil
	}
	c, err := d.Stripe.CreateCustomer(ctx, u.ID, u.Email)
	if err != nil {
		return "", err
	}
	// A concurrent first checkout may have stored another; keep the stored one.
	return d.DB.SetStripeCustomer(ctx, u.ID, c)
}

func (d Deps) checkout(w http.ResponseWriter, r *http.Request) {
	p, err := d.buyer(r)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	if d.Stripe == nil {
		openai.WriteError(w, r, d.Log, d.stripeOff())
		return
	}
	body, err := openai.ReadBody(r, 16<<10)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	c, err := ParseCheckout(body, d.Config)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	c.UserID = p.UserID
	if c.Customer, err = d.customer(r.Context(), p.UserID); err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	s, err := d.Stripe.CreateCheckout(r.Context(), c)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]string{"object": "billing.checkout_session", "id": s.ID, "url": s.URL})
}

func (d Deps) portal(w http.ResponseWriter, r *http.Request) {
	p, err := d.buyer(r)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	if d.Stripe == nil {
		openai.WriteError(w, r, d.Log, d.stripeOff())
		return
	}
	cust, err := d.customer(r.Context(), p.UserID)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	url, err := d.Stripe.CreatePortal(r.Context(), cust, d.Config.Billing.PortalReturnURL)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]string{"object": "billing.portal_session", "url": url})
}

// webhook receives one Stripe event.
func (d Deps) webhook(w http.ResponseWriter, r *http.Request) {
	secrets := []string{d.Config.Env.StripeWebhookSecret, d.Config.Env.StripeWebhookSecretPrevious}
	if secrets[0] == "" && secrets[1] == "" {
		// 503: Stripe keeps retrying (for three days) until it is configured.
		openai.WriteError(w, r, d.Log, &sluice.Error{Kind: sluice.KindUnavailable, Code: sluice.CodeServiceUnavailable,
			Message: "Stripe webhooks are not configured on this deployment (STRIPE_WEBHOOK_SECRET is unset); the event was not processed."})
		return
	}
	// Read raw, not through openai.ReadBody: the signature covers the exact
	// bytes, which that helper trims.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		openai.WriteError(w, r, d.Log, sluice.Invalid("", sluice.CodeInvalidValue, "The webhook body could not be read."))
		return
	}
	if len(body) > maxWebhookBody {
		openai.WriteError(w, r, d.Log, &sluice.Error{Kind: sluice.KindTooLarge, Code: sluice.CodeRequestTooLarge,
			Message: "The webhook body is larger than 1 MiB."})
		return
	}
	ev, err := stripe.ParseEvent(body, r.Header.Get("Stripe-Signature"), secrets...)
	if err != nil && !errors.Is(err, stripe.ErrUnreadable) {
		msg := "The Stripe-Signature header does not verify (wrong secret, altered body, or older than 300 s)."
		if !errors.Is(err, stripe.ErrSignature) {
			msg = "The webhook event cannot be used: " + err.Error()
			d.Log.ErrorContext(r.Context(), "stripe webhook refused", slog.String("err", err.Error()))
		}
		openai.WriteError(w, r, d.Log, sluice.Invalid("", sluice.CodeInvalidValue, "%s", msg))
		return
	}
	status := ""
	if err == nil { // an unreadable object fails like a failed apply: Stripe retries
		status, err = d.process(r.Context(), ev)
	}
	if err != nil {
		// 500: the event stays unprocessed and Stripe delivers it again.
		d.Log.ErrorContext(r.Context(), "stripe webhook failed", slog.String("event", ev.ID),
			slog.String("type", ev.Type), slog.String("err", err.Error()))
		openai.WriteError(w, r, d.Log, &sluice.Error{Kind: sluice.KindInternal, Code: sluice.CodeInternal,
			Message: "The event could not be applied; it was not recorded and Stripe will retry.", Err: err})
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"received": true, "id": ev.ID, "status": status})
}

// process applies ev once: status is "applied", "duplicate" or "ignored"
// (a type Sluice does not act on).
func (d Deps) process(ctx context.Context, ev sluice.BillingEvent) (string, error) {
	apply, ok := handlers[ev.Kind]
	if !ok {
		return "ignored", nil
	}
	var fx effects
	fresh, err := d.DB.ApplyStripeEvent(ctx, ev.ID, ev.Type, ev.Created, func(tx sluice.BillingTx) error {
		return apply(ctx, d, tx, ev, &fx)
	})
	if err != nil {
		return "", err
	}
	status := "applied"
	if !fresh {
		// The first delivery committed; its after-commit steps may not have
		// run (a crash, Redis down): redo them from the ledger, idempotently.
		status = "duplicate"
		if fx, err = d.recorded(ctx, ev); err != nil {
			return "", err
		}
	}
	return status, d.after(ctx, fx)
}

// effects are what an applied event changes outside PostgreSQL, after the
// commit: live balances and cached principals.
type effects struct {
	grants []sluice.LedgerRef // ledger rows to apply to the live counters
	users  []string           // users whose cached principal is stale
	// funds are users whose credit changed under their jobs in flight
	// (a clawback) or whose disputes changed: their suspension is set from
	// their open disputes and jobs holding credit no longer there stopped.
	funds []string
}

// after applies fx: a failure is returned so Stripe retries, and the retry
// (a duplicate) applies them again.
func (d Deps) after(ctx context.Context, fx effects) error {
	var errs []error
	for _, g := range fx.grants {
		errs = append(errs, admissionGrant(ctx, d.Redis, g))
	}
	for _, u := range fx.users {
		errs = append(errs, authn.RevokeUser(ctx, d.Redis, u))
	}
	for _, u := range slices.Compact(slices.Sorted(slices.Values(fx.funds))) {
		errs = append(errs, d.recheckFunds(ctx, u))
	}
	return errors.Join(errs...)
}

// recheckFunds suspends a user's credit and postpaid use while a dispute is
// open (lifts it when none is), and cancels the jobs whose credit holds the
// balance no longer backs, so a clawback never leaves credit below zero
// unseen: what those jobs used before they stop, past the balance, settles
// as an audited debt.
func (d Deps) recheckFunds(ctx context.Context, user string) error {
	open, err := d.DB.OpenDisputes(ctx, user)
	if err != nil {
		return err
	}
	if err := admission.Suspend(ctx, d.Redis, user, open > 0); err != nil {
		return err
	}
	jobs, err := admission.Overheld(ctx, d.Redis, user)
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if _, err := d.Queue.Cancel(ctx, j, ""); err != nil && !errors.Is(err, sluice.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if len(jobs) > 0 {
		d.Log.WarnContext(ctx, "jobs cancelled: their credit was taken back", slog.String("user_id", user), slog.Int("jobs", len(jobs)))
	}
	return errors.Join(errs...)
}

// recorded rebuilds a processed event's effects from what it wrote.
func (d Deps) recorded(ctx context.Context, ev sluice.BillingEvent) (effects, error) {
	refs := ledgerRefs(ev)
	if len(refs) == 0 {
		return effects{}, nil
	}
	rows, err := d.DB.LedgerByRefs(ctx, refs)
	if err != nil {
		return effects{}, err
	}
	fx := effects{grants: rows}
	for _, g := range rows {
		fx.users = append(fx.users, g.UserID)
		fx.funds = append(fx.funds, g.UserID)
	}
	return fx, nil
}
