package billing

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/stripe"
	"github.com/sluice-ai/sluice/shared/stripe/stripetest"
)

// call sends a request with key (may be empty) and returns status and body.
func call(t *testing.T, srv *httptest.Server, method, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck // asserted by the caller
	return resp.StatusCode, out
}

// Checkout (a tier, a credit pack), the portal and the customer behind
// them, against stripe-mock; the plans list; the refusals.
func TestCheckoutAndPortalAgainstStripeMock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "\n    pro: "+proPrice)
	e.cfg.Env.KeyPepper = "pepper-for-the-test"
	e.deps.Verifier = app.NewVerifier(e.cfg, e.db, e.deps.Log)
	e.deps.Stripe = stripe.Wrap(stripe.NewWithBase("sk_test_123", stripetest.Mock(t)), e.cfg.Billing)
	srv := httptest.NewServer(New(e.deps))
	t.Cleanup(srv.Close)
	// A user without a Stripe customer yet: the first checkout creates it.
	u, err := e.db.UpsertUser(e.ctx, redistest.Name("new")+"@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := apikey.New()
	if _, err := e.db.CreateAPIKey(e.ctx, u.ID, "t", apikey.Hash([]byte(e.cfg.Env.KeyPepper), key), apikey.Display(key), nil); err != nil {
		t.Fatal(err)
	}

	st, body := call(t, srv, "POST", "/v1/billing/checkout", key, `{"kind":"credits","pack":"usd_10"}`)
	if id, _ := body["id"].(string); st != 200 || body["object"] != "billing.checkout_session" || !strings.HasPrefix(id, "cs_") || body["url"] == "" {
		t.Fatalf("credits checkout: %d %v", st, body)
	}
	s, err := e.db.UserBilling(e.ctx, u.ID)
	if err != nil || !strings.HasPrefix(s.StripeCustomer, "cus_") {
		t.Fatalf("customer after the first checkout: %q (%v)", s.StripeCustomer, err)
	}
	st, body = call(t, srv, "POST", "/v1/billing/checkout", key, `{"kind":"subscription","tier":"pro","success_url":"https://example.com/ok"}`)
	if st != 200 || body["object"] != "billing.checkout_session" {
		t.Fatalf("subscription checkout: %d %v", st, body)
	}
	if s2, _ := e.db.UserBilling(e.ctx, u.ID); s2.StripeCustomer != s.StripeCustomer {
		t.Fatalf("second checkout changed the customer: %q -> %q", s.StripeCustomer, s2.StripeCustomer)
	}
	st, body = call(t, srv, "POST", "/v1/billing/portal", key, ``)
	if st != 200 || body["object"] != "billing.portal_session" || body["url"] == "" {
		t.Fatalf("portal: %d %v", st, body)
	}

	// Refusals: clear 4xx, nothing sent to Stripe.
	for _, c := range []struct {
		body  string
		param string
	}{
		{`{"kind":"subscription","tier":"enterprise"}`, "tier"},
		{`{"kind":"subscription"}`, "tier"},
		{`{"kind":"credits","pack":"usd_1000000"}`, "pack"},
		{`{"kind":"gift"}`, "kind"},
		{`{"kind":"credits","pack":"usd_10","success_url":"javascript:alert(1)"}`, "success_url"},
		{`{"kind":"credits","pack":"usd_10","extra":1}`, ""},
	} {
		st, body := call(t, srv, "POST", "/v1/billing/checkout", key, c.body)
		errb, _ := body["error"].(map[string]any)
		if st != 400 || errb == nil || (c.param != "" && errb["param"] != c.param) {
			t.Errorf("%s: %d %v, want 400 on %q", c.body, st, body, c.param)
		}
	}
	if st, _ := call(t, srv, "POST", "/v1/billing/checkout", "", `{"kind":"credits","pack":"usd_10"}`); st != 401 {
		t.Errorf("no key: %d, want 401", st)
	}

	// Public plans: the tier with a price and the packs.
	st, body = call(t, srv, "GET", "/v1/billing/plans", "", "")
	raw, _ := json.Marshal(body["data"])
	if st != 200 || !bytes.Contains(raw, []byte(`{"included_tokens":1000000,"kind":"subscription","monthly_cost_micros":29000000,"tier":"pro"}`)) ||
		!bytes.Contains(raw, []byte(`{"amount_micros":10000000,"kind":"credits","pack":"usd_10"}`)) || bytes.Contains(raw, []byte(`enterprise`)) {
		t.Fatalf("plans: %d %s", st, raw)
	}

	// Without a Stripe key: 503 with a clear message.
	e.deps.Stripe = nil
	off := httptest.NewServer(New(e.deps))
	t.Cleanup(off.Close)
	st, body = call(t, off, "POST", "/v1/billing/checkout", key, `{"kind":"credits","pack":"usd_10"}`)
	if errb, _ := body["error"].(map[string]any); st != 503 || !strings.Contains(errb["message"].(string), "STRIPE_SECRET_KEY") {
		t.Fatalf("without Stripe: %d %v", st, body)
	}
}
