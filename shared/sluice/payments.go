package sluice

import (
	"context"
	"errors"
	"time"
)

// The payment provider (Stripe) as the functions see it: calls out
// (Payments, UsageMeter) and events in (BillingEvent). shared/stripe
// implements and translates them, so no function sees the provider's SDK.

// Checkout kinds: what a Checkout Session sells.
const (
	CheckoutSubscription = "subscription"
	CheckoutCredits      = "credits"
)

// Checkout is one purchase to start.
type Checkout struct {
	UserID, Customer      string
	Kind                  string // CheckoutSubscription or CheckoutCredits
	Tier                  string // CheckoutSubscription: the tier
	Pack                  string // CheckoutCredits: the credit pack's name
	SuccessURL, CancelURL string
}

// CheckoutSession is a created Checkout Session: where to send the buyer.
type CheckoutSession struct {
	ID, URL string
}

// Payments are the provider calls a purchase makes. Its errors are
// *Error: a request the provider refused is KindInvalid, an outage
// KindUnavailable.
type Payments interface {
	// CreateCustomer creates the provider's customer for a user; a retry
	// for the same user returns the same one.
	CreateCustomer(ctx context.Context, userID, email string) (string, error)
	CreateCheckout(ctx context.Context, c Checkout) (CheckoutSession, error)
	// CreatePortal returns the URL of a customer-portal session.
	CreatePortal(ctx context.Context, customer, returnURL string) (string, error)
}

// MeterUsage is one postpaid amount reported to the provider's meter.
type MeterUsage struct {
	EventName  string
	Identifier string // the provider drops a second event with it
	Customer   string
	Value      int64 // micro-dollars
	At         time.Time
}

// ErrMeterDuplicate is the provider's answer to a meter event whose
// identifier it already holds: the event was recorded before.
var ErrMeterDuplicate = errors.New("sluice: the meter already holds an event with this identifier")

// UsageMeter receives postpaid usage.
type UsageMeter interface {
	// SendMeterUsage posts u; ErrMeterDuplicate (wrapped) when the
	// provider already has its identifier.
	SendMeterUsage(ctx context.Context, u MeterUsage) error
}

// BillingEventKind is what a provider's webhook event means to Sluice.
type BillingEventKind string

// The events Sluice acts on. The zero kind is an event it ignores.
const (
	EventCheckoutCompleted   BillingEventKind = "checkout_completed"   // a Checkout Session paid (or its delayed payment succeeded)
	EventSubscriptionCreated BillingEventKind = "subscription_created" // the subscription's first state
	EventSubscriptionChanged BillingEventKind = "subscription_changed"
	EventSubscriptionDeleted BillingEventKind = "subscription_deleted"
	EventInvoicePaid         BillingEventKind = "invoice_paid"
	EventInvoiceFailed       BillingEventKind = "invoice_failed"
	EventRefund              BillingEventKind = "refund"
	EventDisputeOpened       BillingEventKind = "dispute_opened"
	EventDisputeClosed       BillingEventKind = "dispute_closed"
)

// Subscription and invoice statuses Sluice acts on (the provider's words).
const (
	SubscriptionActive   = "active"
	SubscriptionTrialing = "trialing"
	SubscriptionPastDue  = "past_due"
	SubscriptionCanceled = "canceled"
	InvoicePaid          = "paid"
	DisputeWon           = "won"
)

// BillingEvent is one webhook event, verified and translated. Exactly the
// field its Kind names is set.
type BillingEvent struct {
	ID      string // the provider's event id (recorded, so a redelivery is a duplicate)
	Type    string // the provider's event type, for logs and the record
	Created time.Time
	Kind    BillingEventKind

	Checkout     *CheckoutCompleted
	Subscription *SubscriptionEvent
	Invoice      *InvoiceEvent
	Refund       *RefundEvent
	Dispute      *DisputeEvent
}

// Owner names the Sluice user a provider object belongs to: the user id
// Sluice put in its metadata (unchecked: it may not be a UUID), else the
// provider's customer. Both empty: not Sluice's.
type Owner struct {
	UserID, Customer string
}

// CheckoutCompleted is a completed Checkout Session.
type CheckoutCompleted struct {
	SessionID string
	Owner
	Kind string // CheckoutCredits, CheckoutSubscription, or another app's
	Paid bool   // false: a delayed payment method, paid later
	// CreditMicros is the credit a pack grants: fixed at the session's
	// creation, else what was paid (<= 0: neither is known).
	CreditMicros   int64
	Pack           string
	Payment        string // the payment intent ("" for none)
	Tier           string // CheckoutSubscription: the tier bought
	SubscriptionID string
}

// SubscriptionEvent is a subscription's new state. Row's UserID and Tier
// are unset: Owner says whose it is, and the tier is the one whose price
// is Price (the provider's price id on its first item), else Tier (what
// Sluice put in its metadata).
type SubscriptionEvent struct {
	Owner
	Row         Subscription
	Price, Tier string
}

// InvoiceEvent is an invoice's new state; Row's UserID is unset.
type InvoiceEvent struct {
	Owner
	Row Invoice
}

// RefundEvent is a charge refunded, in part or whole.
type RefundEvent struct {
	Charge         string
	Payment        string // the payment intent ("" for none)
	RefundedMicros int64  // cumulative
	// Ref names this refund state of the charge (its cumulative amount):
	// each further refund is a new one, a repeat the same.
	Ref string
}

// DisputeEvent is a card dispute opened or closed.
type DisputeEvent struct {
	ID, Payment, Status string
	AmountMicros        int64
}
