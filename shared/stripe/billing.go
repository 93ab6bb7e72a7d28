package stripe

import (
	"context"
	"errors"
	"strconv"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Checkout kinds: what a Checkout Session sells. They travel in the
// session's metadata, so the webhook knows what a completed session paid for.
const (
	KindSubscription = sluice.CheckoutSubscription
	KindCredits      = sluice.CheckoutCredits
)

// Metadata keys Sluice sets on Checkout Sessions and subscriptions.
const (
	MetaUserID = "sluice_user_id"
	MetaKind   = "sluice_kind"
	MetaTier   = "sluice_tier"
	MetaPack   = "sluice_pack"
	// MetaMicros is the credit a pack grants, fixed when the session was
	// created: a later config change does not alter a purchase in flight.
	MetaMicros = "sluice_credit_micros"
)

// Customer returns the Stripe customer for a user: the stored one, else a
// new one. The create carries an idempotency key per user, so a retried or
// concurrent create within Stripe's idempotency window returns the same
// customer instead of a second one.
func Customer(ctx context.Context, sc *stripeapi.Client, userID, email, stored string) (string, error) {
	if stored != "" {
		return stored, nil
	}
	p := &stripeapi.CustomerCreateParams{Email: stripeapi.String(email)}
	p.AddMetadata(MetaUserID, userID)
	p.SetIdempotencyKey("sluice-customer-" + userID)
	c, err := sc.V1Customers.Create(ctx, p)
	if err != nil {
		return "", Err("create the Stripe customer", err)
	}
	return c.ID, nil
}

// Checkout is one purchase to start.
type Checkout struct {
	UserID, Customer      string
	Kind                  string // KindSubscription or KindCredits
	Tier                  string // KindSubscription: the tier
	Pack                  config.CreditPack
	SuccessURL, CancelURL string
}

// CreateCheckout creates a Checkout Session for c with the price from cfg:
// a subscription to a tier (its Stripe price) or a credit pack (its Stripe
// price, or an inline one-off price of its amount). The user id rides as
// client_reference_id and metadata, on the subscription too, so every
// later event maps back to the user.
func CreateCheckout(ctx context.Context, sc *stripeapi.Client, b config.Billing, c Checkout) (*stripeapi.CheckoutSession, error) {
	meta := map[string]string{MetaUserID: c.UserID, MetaKind: c.Kind}
	p := &stripeapi.CheckoutSessionCreateParams{
		Customer:          stripeapi.String(c.Customer),
		ClientReferenceID: stripeapi.String(c.UserID),
		SuccessURL:        stripeapi.String(c.SuccessURL),
		CancelURL:         stripeapi.String(c.CancelURL),
	}
	switch c.Kind {
	case KindSubscription:
		price := b.TierPrices[c.Tier]
		if price == "" {
			return nil, sluice.Invalid("tier", sluice.CodeInvalidValue, "The %s tier cannot be bought.", c.Tier)
		}
		meta[MetaTier] = c.Tier
		p.Mode = stripeapi.String(string(stripeapi.CheckoutSessionModeSubscription))
		p.LineItems = []*stripeapi.CheckoutSessionCreateLineItemParams{{Price: stripeapi.String(price), Quantity: stripeapi.Int64(1)}}
		p.SubscriptionData = &stripeapi.CheckoutSessionCreateSubscriptionDataParams{Metadata: map[string]string{MetaUserID: c.UserID, MetaTier: c.Tier}}
	case KindCredits:
		meta[MetaPack] = c.Pack.Name
		meta[MetaMicros] = strconv.FormatInt(int64(c.Pack.Amount), 10)
		p.Mode = stripeapi.String(string(stripeapi.CheckoutSessionModePayment))
		item := &stripeapi.CheckoutSessionCreateLineItemParams{Quantity: stripeapi.Int64(1)}
		if c.Pack.Price != "" {
			item.Price = stripeapi.String(c.Pack.Price)
		} else {
			item.PriceData = &stripeapi.CheckoutSessionCreateLineItemPriceDataParams{
				Currency:    stripeapi.String("usd"),
				UnitAmount:  stripeapi.Int64(int64(c.Pack.Amount) / 10000), // cents; validated whole
				ProductData: &stripeapi.CheckoutSessionCreateLineItemPriceDataProductDataParams{Name: stripeapi.String("Sluice credit " + c.Pack.Name)},
			}
		}
		p.LineItems = []*stripeapi.CheckoutSessionCreateLineItemParams{item}
		p.PaymentIntentData = &stripeapi.CheckoutSessionCreatePaymentIntentDataParams{Metadata: map[string]string{MetaUserID: c.UserID, MetaPack: c.Pack.Name}}
	default:
		return nil, sluice.Invalid("kind", sluice.CodeInvalidValue, "kind must be subscription or credits.")
	}
	p.Metadata = meta
	s, err := sc.V1CheckoutSessions.Create(ctx, p)
	if err != nil {
		return nil, Err("create the Checkout Session", err)
	}
	return s, nil
}

// CreatePortal returns a customer-portal session for the customer.
func CreatePortal(ctx context.Context, sc *stripeapi.Client, customer, returnURL string) (*stripeapi.BillingPortalSession, error) {
	s, err := sc.V1BillingPortalSessions.Create(ctx, &stripeapi.BillingPortalSessionCreateParams{
		Customer: stripeapi.String(customer), ReturnURL: stripeapi.String(returnURL)})
	if err != nil {
		return nil, Err("create the customer portal session", err)
	}
	return s, nil
}

// Err turns a Stripe API failure into a Sluice error: a request Stripe
// refused for its content (a card error, an invalid request) is the
// client's 400 with Stripe's message; anything else (network, Stripe down,
// rate limited, bad key) is a 503 the client may retry, the detail logged
// but not shown.
func Err(what string, err error) error {
	var se *stripeapi.Error
	if errors.As(err, &se) {
		switch se.Type {
		case stripeapi.ErrorTypeCard:
			return &sluice.Error{Kind: sluice.KindInvalid, Code: string(se.Code), Message: "Stripe declined: " + se.Msg, Err: err}
		case stripeapi.ErrorTypeInvalidRequest:
			if se.HTTPStatusCode != 401 && se.HTTPStatusCode != 403 {
				return &sluice.Error{Kind: sluice.KindInvalid, Code: sluice.CodeInvalidValue, Message: "Stripe refused the request: " + se.Msg, Param: se.Param, Err: err}
			}
		case stripeapi.ErrorTypeIdempotency:
			return &sluice.Error{Kind: sluice.KindConflict, Code: sluice.CodeConflict, Message: "Stripe saw a conflicting request with the same idempotency key; retry.", Err: err}
		}
	}
	return sluice.Unavailable("Could not "+what+" (Stripe is unavailable); retry shortly.", err)
}
