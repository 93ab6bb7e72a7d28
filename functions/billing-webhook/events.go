package billing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	stripeapi "github.com/stripe/stripe-go/v85"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// handler applies one event type inside the event's transaction; what must
// happen after the commit goes into fx.
type handler func(ctx context.Context, d Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error

// handlers are the event types Sluice acts on; any other is answered 2xx
// and ignored.
var handlers = map[string]handler{
	"checkout.session.completed":               checkoutCompleted,
	"checkout.session.async_payment_succeeded": checkoutCompleted,
	"customer.subscription.created":            subscriptionChanged,
	"customer.subscription.updated":            subscriptionChanged,
	"customer.subscription.deleted":            subscriptionChanged,
	"invoice.paid":                             invoicePaid,
	"invoice.payment_failed":                   invoiceFailed,
	"charge.refunded":                          chargeRefunded,
	"charge.dispute.created":                   disputeCreated,
	"charge.dispute.closed":                    disputeClosed,
}

func eventTime(ev stripeapi.Event) time.Time { return time.Unix(ev.Created, 0).UTC() }

// userOf maps a Stripe object to a Sluice user: the user id Sluice put in
// its metadata, else its customer. "" (no error) means the object is not
// Sluice's (a customer created outside it): the event changes nothing.
func userOf(ctx context.Context, tx sluice.BillingTx, meta map[string]string, customer *stripeapi.Customer) (string, error) {
	if id := meta[stripe.MetaUserID]; id != "" {
		if !sluice.IsUUID(id) {
			return "", nil // not a Sluice user id; querying it would abort the transaction
		}
		err := tx.LockUser(ctx, id)
		if errors.Is(err, sluice.ErrNotFound) {
			return "", nil
		}
		return id, err
	}
	if customer == nil || customer.ID == "" {
		return "", nil
	}
	id, err := tx.UserIDByCustomer(ctx, customer.ID)
	if errors.Is(err, sluice.ErrNotFound) {
		return "", nil
	}
	return id, err
}

func checkoutCompleted(ctx context.Context, d Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	s, err := stripe.Object[stripeapi.CheckoutSession](ev)
	if err != nil {
		return err
	}
	meta := s.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	if meta[stripe.MetaUserID] == "" {
		meta[stripe.MetaUserID] = s.ClientReferenceID
	}
	user, err := userOf(ctx, tx, meta, s.Customer)
	if err != nil || user == "" {
		return err
	}
	if s.Customer != nil && s.Customer.ID != "" {
		if err := tx.SetStripeCustomer(ctx, user, s.Customer.ID); err != nil {
			return err
		}
	}
	switch meta[stripe.MetaKind] {
	case stripe.KindCredits:
		if s.PaymentStatus != stripeapi.CheckoutSessionPaymentStatusPaid {
			return nil // a delayed payment method: async_payment_succeeded grants
		}
		micros, err := strconv.ParseInt(meta[stripe.MetaMicros], 10, 64)
		if err != nil || micros <= 0 {
			// A session without Sluice's amount: grant what was paid.
			micros = stripe.CentsToMicros(s.AmountTotal)
		}
		if micros <= 0 {
			return fmt.Errorf("checkout session %s: no credit amount", s.ID)
		}
		payment := ""
		if s.PaymentIntent != nil {
			payment = s.PaymentIntent.ID
		}
		id, err := tx.Grant(ctx, user, sluice.CalendarPeriod(eventTime(ev)), micros,
			"stripe checkout "+meta[stripe.MetaPack], s.ID, payment)
		if err != nil {
			return err
		}
		if id != 0 {
			fx.grants = append(fx.grants, sluice.LedgerRef{ID: id, UserID: user, CreditMicros: micros})
		}
	case stripe.KindSubscription:
		// The subscription starts now; its own events (which may arrive
		// before or after this one) carry the authoritative state, so this
		// one yields to any of them.
		tier := meta[stripe.MetaTier]
		if _, ok := d.Config.Tiers[tier]; !ok || s.Subscription == nil || s.Subscription.ID == "" {
			return nil
		}
		stored, err := tx.UpsertSubscription(ctx, sluice.Subscription{ID: s.Subscription.ID, UserID: user, Tier: tier,
			Status: string(stripeapi.SubscriptionStatusActive)}, eventTime(ev), true)
		if err != nil || !stored {
			return err
		}
		if err := tx.SetUserTier(ctx, user, tier); err != nil {
			return err
		}
		fx.users = append(fx.users, user)
	}
	return nil
}

// paidStatus: a subscription in these states gives its tier. past_due keeps
// it (the payment grace decides); the rest (canceled, unpaid, incomplete,
// incomplete_expired, paused) are the free tier.
func paidStatus(s stripeapi.SubscriptionStatus) bool {
	switch s {
	case stripeapi.SubscriptionStatusActive, stripeapi.SubscriptionStatusTrialing, stripeapi.SubscriptionStatusPastDue:
		return true
	}
	return false
}

func subscriptionChanged(ctx context.Context, d Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	sub, err := stripe.Object[stripeapi.Subscription](ev)
	if err != nil {
		return err
	}
	user, err := userOf(ctx, tx, sub.Metadata, sub.Customer)
	if err != nil || user == "" {
		return err
	}
	row := sluice.Subscription{ID: sub.ID, UserID: user, Status: string(sub.Status), CancelAtPeriodEnd: sub.CancelAtPeriodEnd}
	if ev.Type == "customer.subscription.deleted" {
		row.Status = string(stripeapi.SubscriptionStatusCanceled)
	}
	// The tier is the one whose price is on the subscription's item; a
	// price Sluice does not know fails the event (500) so it is retried
	// once billing.tier_prices is fixed, never applied as a wrong tier.
	if sub.Items != nil && len(sub.Items.Data) > 0 {
		it := sub.Items.Data[0]
		if it.Price != nil {
			row.Tier, _ = d.Config.Billing.TierOfPrice(it.Price.ID)
		}
		if it.CurrentPeriodStart > 0 {
			s, e := time.Unix(it.CurrentPeriodStart, 0).UTC(), time.Unix(it.CurrentPeriodEnd, 0).UTC()
			row.PeriodStart, row.PeriodEnd = &s, &e
		}
	}
	if row.Tier == "" {
		if t := sub.Metadata[stripe.MetaTier]; t != "" {
			if _, ok := d.Config.Tiers[t]; ok {
				row.Tier = t
			}
		}
	}
	if row.Tier == "" {
		return fmt.Errorf("subscription %s: its price is in no tier of billing.tier_prices", sub.ID)
	}
	stored, err := tx.UpsertSubscription(ctx, row, eventTime(ev), ev.Type == "customer.subscription.created")
	if err != nil || !stored {
		return err // not stored: a newer event already applied
	}
	tier := row.Tier
	if !paidStatus(stripeapi.SubscriptionStatus(row.Status)) {
		tier = sluice.TierFree
	}
	if err := tx.SetUserTier(ctx, user, tier); err != nil {
		return err
	}
	fx.users = append(fx.users, user)
	return nil
}

// invoiceOf maps an invoice to its user and Sluice's row. The period is
// the subscription line's: in API 2026-03 an invoice line carries the
// period it bills (the invoice's own period_start/end is the previous
// one's usage window); the line with the latest end is the new period.
func invoiceOf(ctx context.Context, tx sluice.BillingTx, inv *stripeapi.Invoice) (sluice.Invoice, error) {
	row := sluice.Invoice{ID: inv.ID, Status: string(inv.Status), AmountDueMicros: stripe.CentsToMicros(inv.AmountDue),
		AmountPaidMicros: stripe.CentsToMicros(inv.AmountPaid), Currency: string(inv.Currency), HostedURL: inv.HostedInvoiceURL}
	if row.Currency == "" {
		row.Currency = "usd"
	}
	var meta map[string]string
	if inv.Parent != nil && inv.Parent.SubscriptionDetails != nil {
		meta = inv.Parent.SubscriptionDetails.Metadata
		if s := inv.Parent.SubscriptionDetails.Subscription; s != nil {
			row.SubscriptionID = s.ID
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
		s, e := time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC()
		row.PeriodStart, row.PeriodEnd = &s, &e
	}
	var err error
	row.UserID, err = userOf(ctx, tx, meta, inv.Customer)
	return row, err
}

func invoicePaid(ctx context.Context, _ Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	inv, err := stripe.Object[stripeapi.Invoice](ev)
	if err != nil {
		return err
	}
	row, err := invoiceOf(ctx, tx, inv)
	if err != nil || row.UserID == "" {
		return err
	}
	row.Status = string(stripeapi.InvoiceStatusPaid)
	if err := tx.UpsertInvoice(ctx, row, eventTime(ev)); err != nil {
		return err
	}
	if row.SubscriptionID == "" || row.PeriodStart == nil {
		return nil // a one-off invoice starts no period
	}
	// A paid period starts: included tokens count against it from now on.
	if err := tx.StartPeriod(ctx, row.UserID, *row.PeriodStart, *row.PeriodEnd); err != nil {
		return err
	}
	fx.users = append(fx.users, row.UserID)
	return nil
}

func invoiceFailed(ctx context.Context, _ Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	inv, err := stripe.Object[stripeapi.Invoice](ev)
	if err != nil {
		return err
	}
	row, err := invoiceOf(ctx, tx, inv)
	if err != nil || row.UserID == "" {
		return err
	}
	if err := tx.UpsertInvoice(ctx, row, eventTime(ev)); err != nil {
		return err
	}
	if row.SubscriptionID == "" {
		return nil
	}
	// Paid features stop once the grace period has passed since this
	// (the first) failure, unless an invoice is paid meanwhile.
	if err := tx.MarkPastDue(ctx, row.UserID, eventTime(ev)); err != nil {
		return err
	}
	fx.users = append(fx.users, row.UserID)
	return nil
}

// clawback takes unused credit back for a refund or dispute of payment.
func clawback(ctx context.Context, tx sluice.BillingTx, ev stripeapi.Event, fx *effects, payment string, upTo int64, ref, note string) error {
	if payment == "" {
		return nil // not a Checkout payment: no credit came from it
	}
	user, err := tx.UserIDByPayment(ctx, payment)
	if errors.Is(err, sluice.ErrNotFound) {
		return nil // a subscription payment, or not Sluice's: no credit to take back
	}
	if err != nil {
		return err
	}
	id, taken, err := tx.Clawback(ctx, user, sluice.CalendarPeriod(eventTime(ev)), upTo, note, ref, payment)
	if err != nil {
		return err
	}
	if id != 0 && taken > 0 {
		fx.grants = append(fx.grants, sluice.LedgerRef{ID: id, UserID: user, CreditMicros: -taken})
	}
	// Jobs in flight may hold credit the clawback just took: they are
	// stopped after the commit (effects.funds).
	fx.funds = append(fx.funds, user)
	return nil
}

func chargeRefunded(ctx context.Context, _ Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	ch, err := stripe.Object[stripeapi.Charge](ev)
	if err != nil {
		return err
	}
	ref, err := refundRef(ch)
	if err != nil {
		return err
	}
	return clawback(ctx, tx, ev, fx, paymentOf(ch.PaymentIntent), stripe.CentsToMicros(ch.AmountRefunded), ref,
		"stripe refund of "+ch.ID)
}

// disputeCreated takes the disputed credit back and suspends the user's
// prepaid credit and postpaid use until the dispute closes: a user who
// disputes what was spent cannot go on spending meanwhile.
func disputeCreated(ctx context.Context, _ Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	dp, err := stripe.Object[stripeapi.Dispute](ev)
	if err != nil {
		return err
	}
	payment := paymentOf(dp.PaymentIntent)
	if payment != "" {
		user, err := tx.UserIDByPayment(ctx, payment)
		if err != nil && !errors.Is(err, sluice.ErrNotFound) {
			return err
		}
		if user != "" {
			if _, err := tx.OpenDispute(ctx, dp.ID, user, payment, stripe.CentsToMicros(dp.Amount), string(dp.Status)); err != nil {
				return err
			}
			fx.users = append(fx.users, user)
		}
	}
	return clawback(ctx, tx, ev, fx, payment, stripe.CentsToMicros(dp.Amount), "dispute:"+dp.ID,
		"stripe dispute "+dp.ID)
}

// disputeClosed ends a dispute: won, what its clawback took is given back
// (a reversal); either way the suspension lifts once no dispute is open.
func disputeClosed(ctx context.Context, _ Deps, tx sluice.BillingTx, ev stripeapi.Event, fx *effects) error {
	dp, err := stripe.Object[stripeapi.Dispute](ev)
	if err != nil {
		return err
	}
	user, taken, err := tx.CloseDispute(ctx, dp.ID, string(dp.Status))
	if err != nil || user == "" {
		return err
	}
	if dp.Status == stripeapi.DisputeStatusWon && taken > 0 {
		id, err := tx.Reversal(ctx, user, sluice.CalendarPeriod(eventTime(ev)), taken, "stripe dispute won "+dp.ID, "dispute-won:"+dp.ID)
		if err != nil {
			return err
		}
		if id != 0 {
			fx.grants = append(fx.grants, sluice.LedgerRef{ID: id, UserID: user, CreditMicros: taken})
		}
	}
	fx.funds = append(fx.funds, user)
	fx.users = append(fx.users, user)
	return nil
}

func paymentOf(pi *stripeapi.PaymentIntent) string {
	if pi == nil {
		return ""
	}
	return pi.ID
}

// refundRef names a refund state of a charge: its cumulative refunded
// amount, so each further refund is a new clawback and a repeat is none.
func refundRef(ch *stripeapi.Charge) (string, error) {
	if ch.ID == "" {
		return "", errors.New("charge without id")
	}
	return "refund:" + ch.ID + ":" + strconv.FormatInt(ch.AmountRefunded, 10), nil
}

// stripeRefs are the ledger references an event writes (for redoing its
// after-commit steps on a duplicate delivery).
func stripeRefs(ev stripeapi.Event) ([]string, error) {
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		s, err := stripe.Object[stripeapi.CheckoutSession](ev)
		if err != nil {
			return nil, err
		}
		return []string{s.ID}, nil
	case "charge.refunded":
		ch, err := stripe.Object[stripeapi.Charge](ev)
		if err != nil {
			return nil, err
		}
		ref, err := refundRef(ch)
		return []string{ref}, err
	case "charge.dispute.created":
		dp, err := stripe.Object[stripeapi.Dispute](ev)
		if err != nil {
			return nil, err
		}
		return []string{"dispute:" + dp.ID}, nil
	case "charge.dispute.closed":
		dp, err := stripe.Object[stripeapi.Dispute](ev)
		if err != nil {
			return nil, err
		}
		return []string{"dispute-won:" + dp.ID, "dispute:" + dp.ID}, nil
	}
	return nil, nil
}

// admissionGrant applies a ledger row to the user's live balance (once per
// row; the counters reload from the ledger anyway when missing).
func admissionGrant(ctx context.Context, rdb redis.UniversalClient, g sluice.LedgerRef) error {
	if err := admission.Grant(ctx, rdb, g.UserID, g.ID, g.CreditMicros); err != nil {
		return fmt.Errorf("live balance of %s: %w", g.UserID, err)
	}
	return nil
}
