package stripe_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

func event(t *testing.T, typ string, obj any) stripeapi.Event {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return stripeapi.Event{ID: "evt_1", Type: stripeapi.EventType(typ), Created: 1700000000, Data: &stripeapi.EventData{Raw: raw}}
}

// Translate gives each Stripe type Sluice acts on its domain kind and the
// fields the handlers read; other types are the zero kind; an object that
// does not decode is ErrUnreadable with the event's id kept.
func TestTranslate(t *testing.T) {
	t.Parallel()
	ev, err := stripe.Translate(event(t, "checkout.session.completed", map[string]any{
		"id": "cs_1", "object": "checkout.session", "client_reference_id": "u1", "customer": "cus_1",
		"payment_status": "paid", "amount_total": 1000, "payment_intent": "pi_1",
		"metadata": map[string]string{stripe.MetaKind: stripe.KindCredits, stripe.MetaPack: "usd_10"}}))
	c := ev.Checkout
	if err != nil || ev.Kind != sluice.EventCheckoutCompleted || c == nil || c.UserID != "u1" || c.Customer != "cus_1" ||
		!c.Paid || c.CreditMicros != 10_000_000 || c.Payment != "pi_1" || c.Pack != "usd_10" || c.Kind != sluice.CheckoutCredits ||
		!ev.Created.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("checkout: %+v %+v %v", ev, c, err)
	}

	ev, err = stripe.Translate(event(t, "customer.subscription.deleted", map[string]any{
		"id": "sub_1", "object": "subscription", "status": "active", "customer": "cus_1",
		"metadata": map[string]string{stripe.MetaUserID: "u1", stripe.MetaTier: "pro"},
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"id": "si_1", "price": map[string]any{"id": "price_pro"},
			"current_period_start": 1700000000, "current_period_end": 1702592000}}}}))
	s := ev.Subscription
	if err != nil || ev.Kind != sluice.EventSubscriptionDeleted || s.Row.Status != sluice.SubscriptionCanceled ||
		s.Price != "price_pro" || s.Tier != "pro" || s.UserID != "u1" || s.Row.PeriodEnd == nil {
		t.Fatalf("subscription: %+v %+v %v", ev, s, err)
	}

	ev, err = stripe.Translate(event(t, "charge.refunded", map[string]any{"id": "ch_1", "object": "charge",
		"amount_refunded": 250, "payment_intent": "pi_1"}))
	if err != nil || ev.Kind != sluice.EventRefund || ev.Refund.Ref != "refund:ch_1:250" || ev.Refund.RefundedMicros != 2_500_000 {
		t.Fatalf("refund: %+v %v", ev.Refund, err)
	}

	ev, err = stripe.Translate(event(t, "charge.dispute.closed", map[string]any{"id": "dp_1", "object": "dispute",
		"amount": 100, "status": "won", "payment_intent": "pi_1"}))
	if err != nil || ev.Kind != sluice.EventDisputeClosed || ev.Dispute.Status != sluice.DisputeWon || ev.Dispute.AmountMicros != 1_000_000 {
		t.Fatalf("dispute: %+v %v", ev.Dispute, err)
	}

	if ev, err = stripe.Translate(event(t, "customer.created", map[string]any{"id": "cus_1"})); err != nil || ev.Kind != "" {
		t.Fatalf("an ignored type: %+v %v", ev, err)
	}
	bad := event(t, "invoice.paid", map[string]any{"id": "in_1", "object": "invoice", "amount_due": "lots"})
	if ev, err = stripe.Translate(bad); !errors.Is(err, stripe.ErrUnreadable) || ev.ID != "evt_1" {
		t.Fatalf("unreadable: %+v %v", ev, err)
	}
}
