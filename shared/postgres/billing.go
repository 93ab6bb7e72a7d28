package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// billingTx is sluice.BillingTx in one pgx transaction: the event is
// recorded and its effects written together, or neither.
type billingTx struct{ tx pgx.Tx }

// ApplyStripeEvent records the Stripe event id and runs apply in the same
// transaction. It returns false without running apply when the event was
// already processed (a duplicate delivery). An error from apply rolls
// everything back: the event stays unprocessed, and Stripe's retry runs it
// again.
func (db *DB) ApplyStripeEvent(ctx context.Context, id, typ string, created time.Time, apply func(sluice.BillingTx) error) (bool, error) {
	fresh := false
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		var got string
		err := tx.QueryRow(ctx, q("RecordStripeEvent"), id, typ, created).Scan(&got)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // a duplicate: its first delivery applied it
		}
		if err != nil {
			return err
		}
		fresh = true
		return apply(&billingTx{tx: tx})
	})
	if err != nil {
		return false, translateKeep(err)
	}
	return fresh, nil
}

// translateKeep translates database errors but keeps the errors an apply
// function returned as they are: a sluice error, or a plain one such as a
// price missing from the config, which is no database outage.
func translateKeep(err error) error {
	var se *sluice.Error
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	if errors.As(err, &se) {
		return err
	}
	if errors.As(err, &pe) || errors.As(err, &ce) || errors.Is(err, pgx.ErrNoRows) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return translate(err)
	}
	return err
}

// StripeEventProcessed says whether an event was applied (tests, the CLI).
func (db *DB) StripeEventProcessed(ctx context.Context, id string) (bool, error) {
	var ok bool
	err := db.Pool.QueryRow(ctx, q("StripeEventProcessed"), id).Scan(&ok)
	return ok, translate(err)
}

// UserIDByCustomer returns the user whose Stripe customer this is.
func (t *billingTx) UserIDByCustomer(ctx context.Context, customer string) (string, error) {
	var id string
	err := t.tx.QueryRow(ctx, q("UserIDByCustomer"), customer).Scan(&id)
	return id, translate(err)
}

// SetStripeCustomer records a user's Stripe customer unless one is set.
func (t *billingTx) SetStripeCustomer(ctx context.Context, userID, customer string) error {
	var got string
	return translate(t.tx.QueryRow(ctx, q("SetStripeCustomer"), userID, customer).Scan(&got))
}

// LockUser serialises this transaction's money changes for the user.
func (t *billingTx) LockUser(ctx context.Context, userID string) error {
	var id string
	return translate(t.tx.QueryRow(ctx, q("LockUser"), userID).Scan(&id))
}

// Grant appends a purchased credit grant for the Stripe object ref (a
// Checkout Session) paid with payment (a payment intent; may be empty). It
// returns the ledger row id, or 0 when ref was granted already.
func (t *billingTx) Grant(ctx context.Context, userID, period string, micros int64, note, ref, payment string) (int64, error) {
	var id int64
	err := t.tx.QueryRow(ctx, q("BillingGrant"), userID, period, micros, note, ref, payment).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return id, translate(err)
}

// Clawback takes credit back for the refund or dispute ref of payment, so
// that everything taken back for payment comes to at most upTo (what was
// refunded or disputed in all) and at most what payment granted; each
// clawback takes no more than the user's unused credit, so the balance never
// goes below zero. A payment that granted nothing (a subscription invoice)
// writes no row. It returns the ledger row id (0: none written, or ref was
// recorded already) and the amount taken, which may be 0 (the row still
// records that ref was handled).
func (t *billingTx) Clawback(ctx context.Context, userID, period string, upTo int64, note, ref, payment string) (id, taken int64, err error) {
	if err := t.LockUser(ctx, userID); err != nil {
		return 0, 0, err
	}
	var unused, granted, before int64
	if err := t.tx.QueryRow(ctx, q("ClawbackRoom"), userID, payment).Scan(&unused, &granted, &before); err != nil {
		return 0, 0, translate(err)
	}
	if granted <= 0 {
		return 0, 0, nil
	}
	taken = max(min(min(upTo, granted)-before, unused), 0)
	err = t.tx.QueryRow(ctx, q("BillingClawback"), userID, period, -taken, note, ref, payment).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	return id, taken, translate(err)
}

// UserIDByPayment returns the user a credit purchase's payment granted to.
func (t *billingTx) UserIDByPayment(ctx context.Context, payment string) (string, error) {
	var id string
	err := t.tx.QueryRow(ctx, q("UserIDByPayment"), payment).Scan(&id)
	return id, translate(err)
}

// LedgerByRefs returns the ledger rows of these Stripe objects.
func (db *DB) LedgerByRefs(ctx context.Context, refs []string) ([]LedgerRef, error) {
	rows, err := db.Pool.Query(ctx, q("LedgerByRefs"), refs)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LedgerRef, error) {
		var l LedgerRef
		return l, r.Scan(&l.ID, &l.UserID, &l.CreditMicros)
	})
	return out, translate(err)
}

// UpsertSubscription stores s as of the event time eventAt unless a newer
// event already did; weak (a created event) also yields to one of the same
// second. It returns whether s was stored.
func (t *billingTx) UpsertSubscription(ctx context.Context, s Subscription, eventAt time.Time, weak bool) (bool, error) {
	var id string
	err := t.tx.QueryRow(ctx, q("UpsertSubscription"), s.ID, s.UserID, s.Tier, s.Status, s.PeriodStart, s.PeriodEnd,
		s.CancelAtPeriodEnd, eventAt, weak).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, translate(err)
}

// SetUserTier sets the user's tier; free also ends the subscription period.
func (t *billingTx) SetUserTier(ctx context.Context, userID, tier string) error {
	_, err := t.tx.Exec(ctx, q("SetUserTier"), userID, tier)
	return translate(err)
}

// UpsertInvoice stores inv as of the event time eventAt unless a newer
// event already did.
func (t *billingTx) UpsertInvoice(ctx context.Context, inv Invoice, eventAt time.Time) error {
	_, err := t.tx.Exec(ctx, q("UpsertInvoice"), inv.ID, inv.UserID, inv.SubscriptionID, inv.Status, inv.PeriodStart,
		inv.PeriodEnd, inv.AmountDueMicros, inv.AmountPaidMicros, inv.Currency, inv.HostedURL, eventAt)
	return translate(err)
}

// StartPeriod starts a paid subscription period (unless a later one has
// started) and clears the past-due mark.
func (t *billingTx) StartPeriod(ctx context.Context, userID string, start, end time.Time) error {
	_, err := t.tx.Exec(ctx, q("StartPeriod"), userID, start, end)
	return translate(err)
}

// MarkPastDue records a failed payment (the first failure's time stays).
func (t *billingTx) MarkPastDue(ctx context.Context, userID string, at time.Time) error {
	_, err := t.tx.Exec(ctx, q("MarkPastDue"), userID, at)
	return translate(err)
}

// BillingUser returns the user's email and Stripe customer.
func (db *DB) BillingUser(ctx context.Context, userID string) (BillingUser, error) {
	var u BillingUser
	err := db.Pool.QueryRow(ctx, q("BillingUser"), userID).Scan(&u.ID, &u.Email, &u.StripeCustomer)
	return u, translate(err)
}

// SetStripeCustomer records a user's Stripe customer unless one is already
// set, and returns the one the user has.
func (db *DB) SetStripeCustomer(ctx context.Context, userID, customer string) (string, error) {
	var got string
	err := db.Pool.QueryRow(ctx, q("SetStripeCustomer"), userID, customer).Scan(&got)
	return got, translate(err)
}

// UserBilling returns a user's billing state.
func (db *DB) UserBilling(ctx context.Context, userID string) (UserBillingState, error) {
	var s UserBillingState
	err := db.Pool.QueryRow(ctx, q("UserBilling"), userID).Scan(&s.Tier, &s.StripeCustomer, &s.PeriodStart, &s.PeriodEnd, &s.PastDueSince)
	return s, translate(err)
}

// OpenDispute records a card dispute of payment as open; false when it was
// recorded before.
func (t *billingTx) OpenDispute(ctx context.Context, id, userID, payment string, micros int64, status string) (bool, error) {
	var got string
	err := t.tx.QueryRow(ctx, q("OpenDispute"), id, userID, payment, micros, status).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, translate(err)
}

// CloseDispute closes an open dispute with Stripe's final status and
// returns its user and what its clawback took; userID "" when the dispute
// is unknown or was closed before.
func (t *billingTx) CloseDispute(ctx context.Context, id, status string) (userID string, taken int64, err error) {
	err = t.tx.QueryRow(ctx, q("CloseDispute"), id, status).Scan(&userID, &taken)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, nil
	}
	return userID, taken, translate(err)
}

// Reversal gives back micros a clawback took (a dispute decided in the
// user's favour), once per ref; id 0 when ref was recorded before.
func (t *billingTx) Reversal(ctx context.Context, userID, period string, micros int64, note, ref string) (int64, error) {
	var id int64
	err := t.tx.QueryRow(ctx, q("BillingReversal"), userID, period, micros, note, ref).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return id, translate(err)
}

// OpenDisputes counts a user's open card disputes (while any is open, the
// user's prepaid credit and postpaid use are suspended).
func (db *DB) OpenDisputes(ctx context.Context, userID string) (int64, error) {
	var n int64
	err := db.Pool.QueryRow(ctx, q("OpenDisputes"), userID).Scan(&n)
	return n, translate(err)
}
