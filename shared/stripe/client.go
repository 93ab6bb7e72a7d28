package stripe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Client is the Stripe API as the functions use it: sluice.Payments and
// sluice.UsageMeter over a stripe-go client.
type Client struct {
	sc      *stripeapi.Client
	billing config.Billing
}

var (
	_ sluice.Payments   = (*Client)(nil)
	_ sluice.UsageMeter = (*Client)(nil)
)

// Wrap returns a Client over sc, selling what b prices.
func Wrap(sc *stripeapi.Client, b config.Billing) *Client { return &Client{sc: sc, billing: b} }

// Payments returns cfg's client as sluice.Payments, or nil (a nil
// interface) when no secret key is configured.
func Payments(cfg *config.Config) sluice.Payments {
	if sc := New(cfg); sc != nil {
		return Wrap(sc, cfg.Billing)
	}
	return nil
}

// Meter returns cfg's client as sluice.UsageMeter, or nil when no secret
// key is configured.
func Meter(cfg *config.Config) sluice.UsageMeter {
	if sc := New(cfg); sc != nil {
		return Wrap(sc, cfg.Billing)
	}
	return nil
}

// CreateCustomer creates a user's Stripe customer (see Customer).
func (c *Client) CreateCustomer(ctx context.Context, userID, email string) (string, error) {
	return Customer(ctx, c.sc, userID, email, "")
}

// CreateCheckout creates a Checkout Session for co with the prices of the
// client's billing block.
func (c *Client) CreateCheckout(ctx context.Context, co sluice.Checkout) (sluice.CheckoutSession, error) {
	in := Checkout{UserID: co.UserID, Customer: co.Customer, Kind: co.Kind, Tier: co.Tier,
		SuccessURL: co.SuccessURL, CancelURL: co.CancelURL}
	if co.Kind == KindCredits {
		p, ok := c.billing.CreditPack(co.Pack)
		if !ok {
			return sluice.CheckoutSession{}, sluice.Invalid("pack", sluice.CodeInvalidValue, "The credit pack %q does not exist.", co.Pack)
		}
		in.Pack = p
	}
	s, err := CreateCheckout(ctx, c.sc, c.billing, in)
	if err != nil {
		return sluice.CheckoutSession{}, err
	}
	return sluice.CheckoutSession{ID: s.ID, URL: s.URL}, nil
}

// CreatePortal returns the URL of a customer-portal session.
func (c *Client) CreatePortal(ctx context.Context, customer, returnURL string) (string, error) {
	s, err := CreatePortal(ctx, c.sc, customer, returnURL)
	if err != nil {
		return "", err
	}
	return s.URL, nil
}

// SendMeterUsage posts a Billing Meter event; Stripe's "already exists"
// answer wraps sluice.ErrMeterDuplicate.
func (c *Client) SendMeterUsage(ctx context.Context, u sluice.MeterUsage) error {
	p := &stripeapi.BillingMeterEventCreateParams{
		EventName:  stripeapi.String(u.EventName),
		Identifier: stripeapi.String(u.Identifier),
		Payload:    map[string]string{"stripe_customer_id": u.Customer, "value": strconv.FormatInt(u.Value, 10)},
		Timestamp:  stripeapi.Int64(u.At.Unix()),
	}
	_, err := c.sc.V1BillingMeterEvents.Create(ctx, p)
	if DuplicateIdentifier(err) {
		return fmt.Errorf("%w: %w", sluice.ErrMeterDuplicate, err)
	}
	return err
}

// DuplicateIdentifier reports whether err is Stripe's answer to a meter
// event whose identifier it already holds: 400 invalid_request_error "An
// event already exists with identifier …" (as recorded from Stripe; see
// functions/usage-rollup/testdata/meter_event_duplicate.json).
func DuplicateIdentifier(err error) bool {
	var se *stripeapi.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 400 {
		return false
	}
	return se.Code == stripeapi.ErrorCodeResourceAlreadyExists ||
		strings.Contains(se.Msg, "already exists with identifier")
}
