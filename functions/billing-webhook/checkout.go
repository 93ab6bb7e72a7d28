package billing

import (
	"bytes"
	"encoding/json"
	"net/url"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// checkoutRequest is the body of POST /v1/billing/checkout.
type checkoutRequest struct {
	Kind       string `json:"kind"`
	Tier       string `json:"tier"`
	Pack       string `json:"pack"`
	SuccessURL string `json:"success_url"`
	CancelURL  string `json:"cancel_url"`
}

// ParseCheckout validates a checkout request body against what cfg sells
// and returns the purchase (without user and customer). Every refusal is a
// 400 naming the field.
func ParseCheckout(body []byte, cfg *config.Config) (sluice.Checkout, error) {
	var req checkoutRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return sluice.Checkout{}, sluice.Invalid("", sluice.CodeInvalidJSON,
			"The body must be a JSON object with kind (subscription or credits), tier or pack, and optional success_url and cancel_url.")
	}
	if dec.More() {
		return sluice.Checkout{}, sluice.Invalid("", sluice.CodeInvalidJSON, "The body must hold one JSON object.")
	}
	c := sluice.Checkout{Kind: req.Kind, SuccessURL: cfg.Billing.SuccessURL, CancelURL: cfg.Billing.CancelURL}
	switch req.Kind {
	case sluice.CheckoutSubscription:
		if req.Tier == "" {
			return c, sluice.Invalid("tier", sluice.CodeMissingRequired, "tier is required for a subscription.")
		}
		if req.Pack != "" {
			return c, sluice.Invalid("pack", sluice.CodeInvalidValue, "pack is only for kind credits.")
		}
		if cfg.Billing.TierPrices[req.Tier] == "" {
			return c, sluice.Invalid("tier", sluice.CodeInvalidValue, "The tier %q cannot be bought; see GET /v1/billing/plans.", clip(req.Tier))
		}
		c.Tier = req.Tier
	case sluice.CheckoutCredits:
		if req.Pack == "" {
			return c, sluice.Invalid("pack", sluice.CodeMissingRequired, "pack is required for credits.")
		}
		if req.Tier != "" {
			return c, sluice.Invalid("tier", sluice.CodeInvalidValue, "tier is only for kind subscription.")
		}
		if _, ok := cfg.Billing.CreditPack(req.Pack); !ok {
			return c, sluice.Invalid("pack", sluice.CodeInvalidValue, "The credit pack %q does not exist; see GET /v1/billing/plans.", clip(req.Pack))
		}
		c.Pack = req.Pack
	case "":
		return c, sluice.Invalid("kind", sluice.CodeMissingRequired, "kind is required: subscription or credits.")
	default:
		return c, sluice.Invalid("kind", sluice.CodeInvalidValue, "kind must be subscription or credits.")
	}
	for _, f := range []struct {
		name, v string
		dst     *string
	}{{"success_url", req.SuccessURL, &c.SuccessURL}, {"cancel_url", req.CancelURL, &c.CancelURL}} {
		if f.v == "" {
			continue
		}
		u, err := url.Parse(f.v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(f.v) > 2048 {
			return c, sluice.Invalid(f.name, sluice.CodeInvalidValue, "%s must be an http(s) URL of at most 2048 bytes.", f.name)
		}
		*f.dst = f.v
	}
	return c, nil
}

// clip bounds user input echoed in an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
