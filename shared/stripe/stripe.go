// Package stripe is Sluice's one place that uses Stripe's SDK (stripe-go
// v85): it configures the client (the secret key and, for tests, another
// API base such as stripe-mock), implements sluice.Payments (customers,
// Checkout, the customer portal) and sluice.UsageMeter (Billing Meter
// events) over it, and verifies webhooks and translates their events into
// sluice.BillingEvent. The billing-webhook and usage-rollup functions see
// only those domain types.
package stripe

import (
	"net/http"
	"time"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/config"
)

// New returns a Stripe client for cfg's secret key, or nil when no key is
// configured (billing is then off: callers answer 503). STRIPE_API_BASE
// sends every backend (API, meter events) to that base instead of Stripe.
func New(cfg *config.Config) *stripeapi.Client {
	key := cfg.Env.StripeSecretKey
	if key == "" {
		return nil
	}
	return NewWithBase(key, cfg.Env.StripeAPIBase)
}

// NewWithBase returns a client for key against base ("" is Stripe itself).
// Stripe's own retries (with idempotency keys) handle transient failures;
// the timeout bounds one call so a stuck request never holds a function.
func NewWithBase(key, base string) *stripeapi.Client {
	bc := &stripeapi.BackendConfig{
		HTTPClient:        &http.Client{Timeout: 30 * time.Second},
		MaxNetworkRetries: stripeapi.Int64(2),
		// The SDK's default logger prints to stderr; Sluice logs its own
		// failures through slog with the request id.
		LeveledLogger: &stripeapi.LeveledLogger{Level: stripeapi.LevelNull},
	}
	if base != "" {
		bc.URL = stripeapi.String(base)
	}
	return stripeapi.NewClient(key, stripeapi.WithBackends(stripeapi.NewBackendsWithConfig(bc)))
}
