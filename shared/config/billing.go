package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Billing is what Stripe sells: the Stripe price of each paid tier, the
// prepaid credit packs, and how payment failures are handled. The tiers'
// monthly cost and included tokens stay in the tiers block; Stripe's prices
// must match them (Stripe, not Sluice, charges the subscription).
type Billing struct {
	// TierPrices is the Stripe price id (price_...) of each tier a user can
	// subscribe to. A tier without one cannot be bought (free, or
	// enterprise by contract); default none.
	TierPrices map[string]string `yaml:"tier_prices"`
	// CreditPacks are the prepaid credit a user can buy in one payment.
	CreditPacks []CreditPack `yaml:"credit_packs"`
	// PaymentGrace is how long a subscription whose payment failed keeps its
	// paid features before the user is treated as the free tier; default 72h.
	PaymentGrace time.Duration `yaml:"payment_grace"`
	// SuccessURL and CancelURL are where Checkout sends the user back when a
	// request names none; defaults http://localhost:8080/billing?checkout=success
	// and ...=cancel. PortalReturnURL is the customer portal's way back;
	// default http://localhost:8080/billing.
	SuccessURL      string `yaml:"success_url"`
	CancelURL       string `yaml:"cancel_url"`
	PortalReturnURL string `yaml:"portal_return_url"`
}

// CreditPack is one prepaid credit product.
type CreditPack struct {
	// Name is what a checkout request names (usd_10).
	Name string `yaml:"name"`
	// Amount is the credit granted, in dollars (micro-dollars once loaded);
	// also the price when no Stripe price is set (whole cents).
	Amount Micros `yaml:"amount"`
	// Price is the Stripe price id; empty: Checkout sells the pack at Amount
	// with an inline price, so packs work without setting up products.
	Price string `yaml:"price"`
}

// CreditPack returns the named pack.
func (b Billing) CreditPack(name string) (CreditPack, bool) {
	for _, p := range b.CreditPacks {
		if p.Name == name {
			return p, true
		}
	}
	return CreditPack{}, false
}

// TierOfPrice returns the tier whose Stripe price is price.
func (b Billing) TierOfPrice(price string) (string, bool) {
	for t, p := range b.TierPrices {
		if p == price && p != "" {
			return t, true
		}
	}
	return "", false
}

func (c *Config) applyBillingDefaults() {
	b := &c.Billing
	def(&b.PaymentGrace, 72*time.Hour)
	def(&b.SuccessURL, "http://localhost:8080/billing?checkout=success")
	def(&b.CancelURL, "http://localhost:8080/billing?checkout=cancel")
	def(&b.PortalReturnURL, "http://localhost:8080/billing")
}

func (c *Config) validateBilling() error {
	var errs []error
	b := c.Billing
	for tier, price := range b.TierPrices {
		if _, ok := c.Tiers[tier]; !ok {
			errs = append(errs, fmt.Errorf("billing.tier_prices.%s: no such tier", tier))
		}
		if tier == "free" {
			errs = append(errs, errors.New("billing.tier_prices.free: the free tier is not sold"))
		}
		if price != "" && !strings.HasPrefix(price, "price_") {
			errs = append(errs, fmt.Errorf("billing.tier_prices.%s: %q is not a Stripe price id (price_...)", tier, price))
		}
	}
	seen := map[string]bool{}
	for i, p := range b.CreditPacks {
		where := fmt.Sprintf("billing.credit_packs[%d]", i)
		switch {
		case p.Name == "" || strings.ContainsAny(p.Name, " \t\n:"):
			errs = append(errs, fmt.Errorf("%s.name: required, without spaces or colons", where))
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q listed twice", where, p.Name))
		}
		seen[p.Name] = true
		if p.Amount <= 0 || p.Amount%10000 != 0 {
			errs = append(errs, fmt.Errorf("%s.amount: must be a positive amount in whole cents", where))
		}
		if p.Price != "" && !strings.HasPrefix(p.Price, "price_") {
			errs = append(errs, fmt.Errorf("%s.price: %q is not a Stripe price id (price_...)", where, p.Price))
		}
	}
	if b.PaymentGrace < 0 {
		errs = append(errs, errors.New("billing.payment_grace: must not be negative"))
	}
	for k, v := range map[string]string{"success_url": b.SuccessURL, "cancel_url": b.CancelURL, "portal_return_url": b.PortalReturnURL} {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("billing.%s: %q is not an http(s) URL", k, v))
		}
	}
	return errors.Join(errs...)
}
