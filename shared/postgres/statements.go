package postgres

import (
	"context"
	"time"
)

// UsageDaily lists a user's daily rollup rows for days first..last.
func (db *DB) UsageDaily(ctx context.Context, userID string, first, last time.Time) ([]DailyUsage, error) {
	rows, err := db.Pool.Query(ctx, q("UsageDaily"), userID, first, last)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	out := []DailyUsage{}
	for rows.Next() {
		var u DailyUsage
		if err := rows.Scan(&u.Day, &u.Model, &u.Requests, &u.PromptTokens, &u.CompletionTokens, &u.CostMicros); err != nil {
			return nil, translate(err)
		}
		out = append(out, u)
	}
	return out, translate(rows.Err())
}

// Account returns the billing view of a user.
func (db *DB) Account(ctx context.Context, id string) (Account, error) {
	var u Account
	err := db.Pool.QueryRow(ctx, q("Account"), id).Scan(&u.ID, &u.Tier, &u.PeriodStart, &u.PeriodEnd,
		&u.OverageCapMicros, &u.StripeCustomerID, &u.PastDueSince)
	return u, translate(err)
}

// Statements returns a user's newest n monthly statements.
func (db *DB) Statements(ctx context.Context, userID string, n int) ([]Statement, error) {
	rows, err := db.Pool.Query(ctx, q("Statements"), userID, n)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []Statement
	for rows.Next() {
		var s Statement
		if err := rows.Scan(&s.Month, &s.Requests, &s.PromptTokens, &s.CompletionTokens, &s.IncludedTokens,
			&s.CreditsUsed, &s.CreditsPurchased, &s.Overage, &s.Subscription); err != nil {
			return nil, translate(err)
		}
		out = append(out, s)
	}
	return out, translate(rows.Err())
}

// UserInvoices lists a user's Stripe invoices, newest first.
func (db *DB) UserInvoices(ctx context.Context, userID string) ([]StatementInvoice, error) {
	rows, err := db.Pool.Query(ctx, q("UserInvoices"), userID)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []StatementInvoice
	for rows.Next() {
		var i StatementInvoice
		if err := rows.Scan(&i.ID, &i.Status, &i.AmountPaid, &i.HostedInvoiceURL, &i.Month); err != nil {
			return nil, translate(err)
		}
		out = append(out, i)
	}
	return out, translate(rows.Err())
}

// Revenue returns the last days days, newest first.
func (db *DB) Revenue(ctx context.Context, days int) ([]RevenueDay, error) {
	rows, err := db.Pool.Query(ctx, q("Revenue"), days)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []RevenueDay
	for rows.Next() {
		var r RevenueDay
		if err := rows.Scan(&r.Day, &r.CreditsPurchased, &r.Subscriptions, &r.Usage, &r.Overage); err != nil {
			return nil, translate(err)
		}
		out = append(out, r)
	}
	return out, translate(rows.Err())
}

// UsageFoldedAt is when the rollup last folded raw usage into the daily and
// hourly rollups (nil: never): the rollups hold requests up to then.
func (db *DB) UsageFoldedAt(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	err := db.Pool.QueryRow(ctx, q("UsageFoldedAt")).Scan(&t)
	return t, translate(err)
}
