package billing

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// Any checkout body is either refused with a 400 naming the problem, or
// names something that is for sale, with http(s) return URLs.
func FuzzParseCheckout(f *testing.F) {
	cfg, err := config.Parse([]byte("billing:\n  tier_prices: {pro: price_pro}\n"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"kind":"credits","pack":"usd_10"}`, `{"kind":"subscription","tier":"pro","success_url":"https://a/b"}`,
		`{"kind":"subscription","tier":"free"}`, `{"kind":1}`, `{}`, `[]`, `{"kind":"credits","pack":"usd_10"} {}`, `{"cancel_url":"http://"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := ParseCheckout(body, cfg)
		if err != nil {
			if sluice.KindOf(err) != sluice.KindInvalid {
				t.Fatalf("%q: %v is not a 400", body, err)
			}
			return
		}
		switch c.Kind {
		case stripe.KindSubscription:
			if cfg.Billing.TierPrices[c.Tier] == "" {
				t.Fatalf("%q: tier %q is not for sale", body, c.Tier)
			}
		case stripe.KindCredits:
			if _, ok := cfg.Billing.CreditPack(c.Pack); !ok {
				t.Fatalf("%q: pack %q does not exist", body, c.Pack)
			}
		default:
			t.Fatalf("%q: kind %q accepted", body, c.Kind)
		}
		if c.SuccessURL == "" || c.CancelURL == "" {
			t.Fatalf("%q: empty return URL", body)
		}
	})
}

// Any webhook body and signature header: an error or a verified event,
// never a panic; a forged header never verifies.
func FuzzVerifyEvent(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","object":"event"}`), "t=1,v1=abc")
	f.Add([]byte(`{}`), "")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		if _, err := stripe.VerifyEvent(body, header, "whsec_fuzz"); err == nil {
			t.Fatalf("a forged signature verified: %q %q", body, header)
		}
	})
}
