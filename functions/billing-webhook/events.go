package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// handler applies one kind of event inside the event's transaction; what
// must happen after the commit goes into fx.
type handler func(ctx context.Context, d Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error

// handlers are the events Sluice acts on (shared/stripe translates
// Stripe's types into these kinds); any other is answered 2xx and ignored.
var handlers = map[sluice.BillingEventKind]handler{
	sluice.EventCheckoutCompleted:   checkoutCompleted,
	sluice.EventSubscriptionCreated: subscriptionChanged,
	sluice.EventSubscriptionChanged: subscriptionChanged,
	sluice.EventSubscriptionDeleted: subscriptionChanged,
	sluice.EventInvoicePaid:         invoicePaid,
	sluice.EventInvoiceFailed:       invoiceFailed,
	sluice.EventRefund:              chargeRefunded,
	sluice.EventDisputeOpened:       disputeCreated,
	sluice.EventDisputeClosed:       disputeClosed,
}

// userOf maps a provider object's owner to a Sluice user: the user id
// Sluice put in its metadata, else its customer. "" (no error) means the
// object is not Sluice's (a customer created outside it): the event
// changes nothing.
func userOf(ctx context.Context, tx sluice.BillingTx, o sluice.Owner) (string, error) {
	if id := o.UserID; id != "" {
		if !sluice.IsUUID(id) {
			return "", nil // not a Sluice user id; querying it would abort the transaction
		}
		err := tx.LockUser(ctx, id)
		if errors.Is(err, sluice.ErrNotFound) {
			return "", nil
		}
		return id, err
	}
	if o.Customer == "" {
		return "", nil
	}
	id, err := tx.UserIDByCustomer(ctx, o.Customer)
	if errors.Is(err, sluice.ErrNotFound) {
		return "", nil
	}
	return id, err
}

func checkoutCompleted(ctx context.Context, d Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	s := ev.Checkout
	user, err := userOf(ctx, tx, s.Owner)
	if err != nil || user == "" {
		return err
	}
	if s.Customer != "" {
		if err := tx.SetStripeCustomer(ctx, user, s.Customer); err != nil {
			return err
		}
	}
	switch s.Kind {
	case sluice.CheckoutCredits:
		if !s.Paid {
			return nil // a delayed payment method: async_payment_succeeded grants
		}
		if s.CreditMicros <= 0 {
			return fmt.Errorf("checkout session %s: no credit amount", s.SessionID)
		}
		id, err := tx.Grant(ctx, user, sluice.CalendarPeriod(ev.Created), s.CreditMicros,
			"stripe checkout "+s.Pack, s.SessionID, s.Payment)
		if err != nil {
			return err
		}
		if id != 0 {
			fx.grants = append(fx.grants, sluice.LedgerRef{ID: id, UserID: user, CreditMicros: s.CreditMicros})
		}
	case sluice.CheckoutSubscription:
		// The subscription starts now; its own events (which may arrive
		// before or after this one) carry the authoritative state, so this
		// one yields to any of them.
		if _, ok := d.Config.Tiers[s.Tier]; !ok || s.SubscriptionID == "" {
			return nil
		}
		stored, err := tx.UpsertSubscription(ctx, sluice.Subscription{ID: s.SubscriptionID, UserID: user, Tier: s.Tier,
			Status: sluice.SubscriptionActive}, ev.Created, true)
		if err != nil || !stored {
			return err
		}
		if err := tx.SetUserTier(ctx, user, s.Tier); err != nil {
			return err
		}
		fx.users = append(fx.users, user)
	}
	return nil
}

// paidStatus: a subscription in these states gives its tier. past_due keeps
// it (the payment grace decides); the rest (canceled, unpaid, incomplete,
// incomplete_expired, paused) are the free tier.
func paidStatus(s string) bool {
	switch s {
	case sluice.SubscriptionActive, sluice.SubscriptionTrialing, sluice.SubscriptionPastDue:
		return true
	}
	return false
}

func subscriptionChanged(ctx context.Context, d Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	sub := ev.Subscription
	user, err := userOf(ctx, tx, sub.Owner)
	if err != nil || user == "" {
		return err
	}
	row := sub.Row
	row.UserID = user
	// The tier is the one whose price is on the subscription's item; a
	// price Sluice does not know fails the event (500) so it is retried
	// once billing.tier_prices is fixed, never applied as a wrong tier.
	if sub.Price != "" {
		row.Tier, _ = d.Config.Billing.TierOfPrice(sub.Price)
	}
	if row.Tier == "" && sub.Tier != "" {
		if _, ok := d.Config.Tiers[sub.Tier]; ok {
			row.Tier = sub.Tier
		}
	}
	if row.Tier == "" {
		return fmt.Errorf("subscription %s: its price is in no tier of billing.tier_prices", row.ID)
	}
	stored, err := tx.UpsertSubscription(ctx, row, ev.Created, ev.Kind == sluice.EventSubscriptionCreated)
	if err != nil || !stored {
		return err // not stored: a newer event already applied
	}
	tier := row.Tier
	if !paidStatus(row.Status) {
		tier = sluice.TierFree
	}
	if err := tx.SetUserTier(ctx, user, tier); err != nil {
		return err
	}
	fx.users = append(fx.users, user)
	return nil
}

// invoiceOf is the invoice's row with its user ("" when not Sluice's).
func invoiceOf(ctx context.Context, tx sluice.BillingTx, inv *sluice.InvoiceEvent) (sluice.Invoice, error) {
	row := inv.Row
	var err error
	row.UserID, err = userOf(ctx, tx, inv.Owner)
	return row, err
}

func invoicePaid(ctx context.Context, _ Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	row, err := invoiceOf(ctx, tx, ev.Invoice)
	if err != nil || row.UserID == "" {
		return err
	}
	row.Status = sluice.InvoicePaid
	if err := tx.UpsertInvoice(ctx, row, ev.Created); err != nil {
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

func invoiceFailed(ctx context.Context, _ Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	row, err := invoiceOf(ctx, tx, ev.Invoice)
	if err != nil || row.UserID == "" {
		return err
	}
	if err := tx.UpsertInvoice(ctx, row, ev.Created); err != nil {
		return err
	}
	if row.SubscriptionID == "" {
		return nil
	}
	// Paid features stop once the grace period has passed since this
	// (the first) failure, unless an invoice is paid meanwhile.
	if err := tx.MarkPastDue(ctx, row.UserID, ev.Created); err != nil {
		return err
	}
	fx.users = append(fx.users, row.UserID)
	return nil
}

// clawback takes unused credit back for a refund or dispute of payment.
func clawback(ctx context.Context, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects, payment string, upTo int64, ref, note string) error {
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
	id, taken, err := tx.Clawback(ctx, user, sluice.CalendarPeriod(ev.Created), upTo, note, ref, payment)
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

func chargeRefunded(ctx context.Context, _ Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	rf := ev.Refund
	return clawback(ctx, tx, ev, fx, rf.Payment, rf.RefundedMicros, rf.Ref, "stripe refund of "+rf.Charge)
}

// disputeCreated takes the disputed credit back and suspends the user's
// prepaid credit and postpaid use until the dispute closes: a user who
// disputes what was spent cannot go on spending meanwhile.
func disputeCreated(ctx context.Context, _ Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	dp := ev.Dispute
	if dp.Payment != "" {
		user, err := tx.UserIDByPayment(ctx, dp.Payment)
		if err != nil && !errors.Is(err, sluice.ErrNotFound) {
			return err
		}
		if user != "" {
			if _, err := tx.OpenDispute(ctx, dp.ID, user, dp.Payment, dp.AmountMicros, dp.Status); err != nil {
				return err
			}
			fx.users = append(fx.users, user)
		}
	}
	return clawback(ctx, tx, ev, fx, dp.Payment, dp.AmountMicros, "dispute:"+dp.ID, "stripe dispute "+dp.ID)
}

// disputeClosed ends a dispute: won, what its clawback took is given back
// (a reversal); either way the suspension lifts once no dispute is open.
func disputeClosed(ctx context.Context, _ Deps, tx sluice.BillingTx, ev sluice.BillingEvent, fx *effects) error {
	dp := ev.Dispute
	user, taken, err := tx.CloseDispute(ctx, dp.ID, dp.Status)
	if err != nil || user == "" {
		return err
	}
	if dp.Status == sluice.DisputeWon && taken > 0 {
		id, err := tx.Reversal(ctx, user, sluice.CalendarPeriod(ev.Created), taken, "stripe dispute won "+dp.ID, "dispute-won:"+dp.ID)
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

// ledgerRefs are the ledger references an event writes (for redoing its
// after-commit steps on a duplicate delivery).
func ledgerRefs(ev sluice.BillingEvent) []string {
	switch ev.Kind {
	case sluice.EventCheckoutCompleted:
		return []string{ev.Checkout.SessionID}
	case sluice.EventRefund:
		return []string{ev.Refund.Ref}
	case sluice.EventDisputeOpened:
		return []string{"dispute:" + ev.Dispute.ID}
	case sluice.EventDisputeClosed:
		return []string{"dispute-won:" + ev.Dispute.ID, "dispute:" + ev.Dispute.ID}
	}
	return nil
}

// admissionGrant applies a ledger row to the user's live balance (once per
// row; the counters reload from the ledger anyway when missing).
func admissionGrant(ctx context.Context, rdb redis.UniversalClient, g sluice.LedgerRef) error {
	if err := admission.Grant(ctx, rdb, g.UserID, g.ID, g.CreditMicros); err != nil {
		return fmt.Errorf("live balance of %s: %w", g.UserID, err)
	}
	return nil
}
