package stripe

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// ErrUnreadable is a verified event whose object does not decode as its
// type says: it cannot be applied (the webhook answers 500, so Stripe
// retries it).
var ErrUnreadable = errors.New("stripe: the event's object does not decode")

// ParseEvent verifies payload's Stripe-Signature header (VerifyEvent) and
// translates the event into Sluice's terms (Translate).
func ParseEvent(payload []byte, header string, secrets ...string) (sluice.BillingEvent, error) {
	ev, err := VerifyEvent(payload, header, secrets...)
	if err != nil {
		return sluice.BillingEvent{}, err
	}
	return Translate(ev)
}

// Translate maps a Stripe event to a sluice.BillingEvent: the kind and the
// object's fields Sluice acts on. A type Sluice does not act on has the
// zero kind. Errors wrap ErrUnreadable; the event returned with one still
// carries its id, type and time.
func Translate(ev stripeapi.Event) (sluice.BillingEvent, error) {
	out := sluice.BillingEvent{ID: ev.ID, Type: string(ev.Type), Created: time.Unix(ev.Created, 0).UTC()}
	var err error
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		out.Kind = sluice.EventCheckoutCompleted
		out.Checkout, err = checkoutOf(ev)
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		out.Kind = map[stripeapi.EventType]sluice.BillingEventKind{
			"customer.subscription.created": sluice.EventSubscriptionCreated,
			"customer.subscription.updated": sluice.EventSubscriptionChanged,
			"customer.subscription.deleted": sluice.EventSubscriptionDeleted,
		}[ev.Type]
		out.Subscription, err = subscriptionOf(ev)
	case "invoice.paid", "invoice.payment_failed":
		out.Kind = sluice.EventInvoicePaid
		if ev.Type == "invoice.payment_failed" {
			out.Kind = sluice.EventInvoiceFailed
		}
		out.Invoice, err = invoiceOf(ev)
	case "charge.refunded":
		out.Kind = sluice.EventRefund
		out.Refund, err = refundOf(ev)
	case "charge.dispute.created", "charge.dispute.closed":
		out.Kind = sluice.EventDisputeOpened
		if ev.Type == "charge.dispute.closed" {
			out.Kind = sluice.EventDisputeClosed
		}
		out.Dispute, err = disputeOf(ev)
	}
	if err != nil {
		return out, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	return out, nil
}

func customerID(c *stripeapi.Customer) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func paymentOf(pi *stripeapi.PaymentIntent) string {
	if pi == nil {
		return ""
	}
	return pi.ID
}

func checkoutOf(ev stripeapi.Event) (*sluice.CheckoutCompleted, error) {
	s, err := Object[stripeapi.CheckoutSession](ev)
	if err != nil {
		return nil, err
	}
	meta := s.Metadata // reading a nil map is fine
	c := &sluice.CheckoutCompleted{SessionID: s.ID, Owner: sluice.Owner{UserID: meta[MetaUserID], Customer: customerID(s.Customer)},
		Kind: meta[MetaKind], Paid: s.PaymentStatus == stripeapi.CheckoutSessionPaymentStatusPaid, Pack: meta[MetaPack],
		Payment: paymentOf(s.PaymentIntent), Tier: meta[MetaTier]}
	if c.UserID == "" {
		c.UserID = s.ClientReferenceID
	}
	if s.Subscription != nil {
		c.SubscriptionID = s.Subscription.ID
	}
	c.CreditMicros, err = strconv.ParseInt(meta[MetaMicros], 10, 64)
	if err != nil || c.CreditMicros <= 0 {
		// A session without Sluice's amount: what was paid.
		c.CreditMicros = CentsToMicros(s.AmountTotal)
	}
	return c, nil
}

func subscriptionOf(ev stripeapi.Event) (*sluice.SubscriptionEvent, error) {
	sub, err := Object[stripeapi.Subscription](ev)
	if err != nil {
		return nil, err
	}
	e := &sluice.SubscriptionEvent{Owner: sluice.Owner{UserID: sub.Metadata[MetaUserID], Customer: customerID(sub.Customer)},
		Row:  sluice.Subscription{ID: sub.ID, Status: string(sub.Status), CancelAtPeriodEnd: sub.CancelAtPeriodEnd},
		Tier: sub.Metadata[MetaTier]}
	if ev.Type == "customer.subscription.deleted" {
		e.Row.Status = string(stripeapi.SubscriptionStatusCanceled)
	}
	if sub.Items != nil && len(sub.Items.Data) > 0 {
		it := sub.Items.Data[0]
		if it.Price != nil {
			e.Price = it.Price.ID
		}
		if it.CurrentPeriodStart > 0 {
			s, end := time.Unix(it.CurrentPeriodStart, 0).UTC(), time.Unix(it.CurrentPeriodEnd, 0).UTC()
			e.Row.PeriodStart, e.Row.PeriodEnd = &s, &end
		}
	}
	return e, nil
}

// invoiceOf maps an invoice to Sluice's row. The period is the
// subscription line's: in API 2026-03 an invoice line carries the period it
// bills (the invoice's own period_start/end is the previous one's usage
// window); the line with the latest end is the new period.
func invoiceOf(ev stripeapi.Event) (*sluice.InvoiceEvent, error) {
	inv, err := Object[stripeapi.Invoice](ev)
	if err != nil {
		return nil, err
	}
	e := &sluice.InvoiceEvent{Owner: sluice.Owner{Customer: customerID(inv.Customer)},
		Row: sluice.Invoice{ID: inv.ID, Status: string(inv.Status), AmountDueMicros: CentsToMicros(inv.AmountDue),
			AmountPaidMicros: CentsToMicros(inv.AmountPaid), Currency: string(inv.Currency), HostedURL: inv.HostedInvoiceURL}}
	if e.Row.Currency == "" {
		e.Row.Currency = "usd"
	}
	if inv.Parent != nil && inv.Parent.SubscriptionDetails != nil {
		e.UserID = inv.Parent.SubscriptionDetails.Metadata[MetaUserID]
		if s := inv.Parent.SubscriptionDetails.Subscription; s != nil {
			e.Row.SubscriptionID = s.ID
		}
	}
	var start, end int64
	if inv.Lines != nil {
		for _, l := range inv.Lines.Data {
			if l.Period != nil && l.Period.End > end {
				start, end = l.Period.Start, l.Period.End
			}
		}
	}
	if end == 0 {
		start, end = inv.PeriodStart, inv.PeriodEnd
	}
	if end > 0 {
		s, e2 := time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC()
		e.Row.PeriodStart, e.Row.PeriodEnd = &s, &e2
	}
	return e, nil
}

func refundOf(ev stripeapi.Event) (*sluice.RefundEvent, error) {
	ch, err := Object[stripeapi.Charge](ev)
	if err != nil {
		return nil, err
	}
	if ch.ID == "" {
		return nil, errors.New("charge without id")
	}
	return &sluice.RefundEvent{Charge: ch.ID, Payment: paymentOf(ch.PaymentIntent), RefundedMicros: CentsToMicros(ch.AmountRefunded),
		Ref: "refund:" + ch.ID + ":" + strconv.FormatInt(ch.AmountRefunded, 10)}, nil
}

func disputeOf(ev stripeapi.Event) (*sluice.DisputeEvent, error) {
	dp, err := Object[stripeapi.Dispute](ev)
	if err != nil {
		return nil, err
	}
	return &sluice.DisputeEvent{ID: dp.ID, Payment: paymentOf(dp.PaymentIntent), Status: string(dp.Status),
		AmountMicros: CentsToMicros(dp.Amount)}, nil
}
