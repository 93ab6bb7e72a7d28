package stripe_test

import (
	"context"
	"testing"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// The client goes where STRIPE_API_BASE says: a customer created against
// stripe-mock comes back with an id.
func TestClientAgainstStripeMock(t *testing.T) {
	t.Parallel()
	base := testenv.StripeMock(t)
	cfg, err := config.Load(func(k string) string {
		return map[string]string{"STRIPE_SECRET_KEY": "sk_test_123", "STRIPE_API_BASE": base}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	sc := stripe.New(cfg)
	if sc == nil {
		t.Fatal("no client with a key configured")
	}
	c, err := sc.V1Customers.Create(context.Background(), &stripeapi.CustomerCreateParams{Email: stripeapi.String("a@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" {
		t.Fatal("customer without id")
	}
	cfg.Env.StripeSecretKey = ""
	if stripe.New(cfg) != nil {
		t.Fatal("a client without a key")
	}
}

// DuplicateIdentifier recognises only Stripe's 400 for a repeated meter
// identifier (functions/usage-rollup replays the recorded body end to end).
func TestDuplicateIdentifierRecognised(t *testing.T) {
	t.Parallel()
	if stripe.DuplicateIdentifier(context.Canceled) || stripe.DuplicateIdentifier(nil) {
		t.Fatal("non-Stripe errors are not duplicates")
	}
	dup := &stripeapi.Error{HTTPStatusCode: 400, Code: stripeapi.ErrorCodeResourceAlreadyExists}
	other := &stripeapi.Error{HTTPStatusCode: 400, Code: stripeapi.ErrorCodeResourceMissing}
	if !stripe.DuplicateIdentifier(dup) || stripe.DuplicateIdentifier(other) {
		t.Fatal("misclassified a Stripe error")
	}
}
