package stripe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// replay answers every request with a recorded Stripe response and
// remembers the requests' idempotency keys.
func replay(t *testing.T, status int, file string) (string, func() []string) {
	t.Helper()
	body, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_recorded")
		w.WriteHeader(status)
		w.Write(body) //nolint:errcheck
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), keys...) }
}

// A customer create carries an idempotency key per user; a key reused with
// other parameters (recorded idempotency_error) is a 409 conflict.
func TestCustomerIdempotencyRecorded(t *testing.T) {
	t.Parallel()
	base, keys := replay(t, http.StatusBadRequest, "idempotency_error.json")
	_, err := stripe.Customer(context.Background(), stripe.NewWithBase("sk_test_123", base), "user-1", "a@example.com", "")
	if e := sluice.AsError(err); e == nil || e.Kind != sluice.KindConflict {
		t.Fatalf("idempotency error = %v, want a conflict", err)
	}
	if k := keys(); len(k) != 1 || k[0] != "sluice-customer-user-1" {
		t.Fatalf("idempotency keys sent %q", k)
	}
	// A stored customer is used without calling Stripe.
	if c, err := stripe.Customer(context.Background(), nil, "user-1", "a@example.com", "cus_stored"); err != nil || c != "cus_stored" {
		t.Fatalf("stored customer: %q %v", c, err)
	}
}

// A declined card (recorded card_declined) is the client's 400 with Stripe's
// code and message, not a 5xx.
func TestCardDeclinedRecorded(t *testing.T) {
	t.Parallel()
	base, _ := replay(t, http.StatusPaymentRequired, "card_declined.json")
	cfg, _ := config.Parse(nil)
	pack, _ := cfg.Billing.CreditPack("usd_10")
	_, err := stripe.CreateCheckout(context.Background(), stripe.NewWithBase("sk_test_123", base), cfg.Billing,
		stripe.Checkout{UserID: "u", Customer: "cus_1", Kind: stripe.KindCredits, Pack: pack, SuccessURL: "https://x/ok", CancelURL: "https://x/no"})
	e := sluice.AsError(err)
	if e == nil || e.Kind != sluice.KindInvalid || e.Code != "card_declined" || e.Message != "Stripe declined: Your card was declined." {
		t.Fatalf("card declined = %+v", e)
	}
}

// Both Checkout kinds and the portal against stripe-mock (which validates
// every parameter against Stripe's OpenAPI spec).
func TestCheckoutParamsAgainstStripeMock(t *testing.T) {
	t.Parallel()
	sc := stripe.NewWithBase("sk_test_123", testenv.StripeMock(t))
	cfg, err := config.Parse([]byte("billing:\n  tier_prices: {pro: price_pro}\n  credit_packs: [{name: usd_10, amount: 10}, {name: usd_25, amount: 25, price: price_pack25}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cust, err := stripe.Customer(ctx, sc, "user-2", "b@example.com", "")
	if err != nil || cust == "" {
		t.Fatalf("customer: %q %v", cust, err)
	}
	p10, _ := cfg.Billing.CreditPack("usd_10")
	p25, _ := cfg.Billing.CreditPack("usd_25")
	for _, c := range []stripe.Checkout{
		{Kind: stripe.KindSubscription, Tier: "pro"},
		{Kind: stripe.KindCredits, Pack: p10}, // inline price
		{Kind: stripe.KindCredits, Pack: p25}, // a Stripe price
	} {
		c.UserID, c.Customer, c.SuccessURL, c.CancelURL = "user-2", cust, "https://x/ok", "https://x/no"
		s, err := stripe.CreateCheckout(ctx, sc, cfg.Billing, c)
		if err != nil || s.ID == "" {
			t.Fatalf("checkout %+v: %v", c, err)
		}
	}
	if _, err := stripe.CreateCheckout(ctx, sc, cfg.Billing, stripe.Checkout{Kind: stripe.KindSubscription, Tier: "enterprise"}); sluice.KindOf(err) != sluice.KindInvalid {
		t.Fatalf("unsold tier: %v", err)
	}
	ps, err := stripe.CreatePortal(ctx, sc, cust, "https://x/billing")
	if err != nil || ps.URL == "" {
		t.Fatalf("portal: %+v %v", ps, err)
	}
}
