package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// UsageDaily lists a user's daily rollup rows for days first..last.
func (db *DB) UsageDaily(ctx context.Context, userID string, first, last time.Time) ([]DailyUsage, error) {
	rows, err := db.Pool.Query(ctx, q("UsageDaily"), userID, first, last)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DailyUsage, error) {
		var u DailyUsage
		err := row.Scan(&u.Day, &u.Model, &u.Requests, &u.PromptTokens, &u.CompletionTokens, &u.CostMicros,
			&u.CachedTokens, &u.CachedSavedMicros)
		return u, err
	})
	return out, translate(err)
}

// UsageByKey sums a user's raw usage for days first..last per API key, at
// list price (prices as FoldUsage takes them).
func (db *DB) UsageByKey(ctx context.Context, userID string, first, last time.Time, prices []ModelPrices) ([]KeyUsage, error) {
	a := priceArrays(prices)
	rows, err := db.Pool.Query(ctx, q("UsageByKey"), userID, first, last, a.models, a.in, a.out, a.req, a.gpu, a.cached)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (KeyUsage, error) {
		var k KeyUsage
		err := row.Scan(&k.KeyID, &k.Name, &k.Prefix, &k.Requests, &k.PromptTokens, &k.CompletionTokens, &k.CachedTokens,
			&k.CostMicros, &k.CachedSavedMicros)
		return k, err
	})
	return out, translate(err)
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
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Statement, error) {
		var s Statement
		err := row.Scan(&s.Month, &s.Requests, &s.PromptTokens, &s.CompletionTokens, &s.IncludedTokens,
			&s.CreditsUsed, &s.CreditsPurchased, &s.Overage, &s.Subscription, &s.CachedTokens, &s.CachedSaved,
			&s.LedgerPromptTokens)
		return s, err
	})
	return out, translate(err)
}

// UserInvoices lists a user's Stripe invoices, newest first.
func (db *DB) UserInvoices(ctx context.Context, userID string) ([]StatementInvoice, error) {
	rows, err := db.Pool.Query(ctx, q("UserInvoices"), userID)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StatementInvoice, error) {
		var i StatementInvoice
		err := row.Scan(&i.ID, &i.Status, &i.AmountPaid, &i.HostedInvoiceURL, &i.Month)
		return i, err
	})
	return out, translate(err)
}

// Revenue returns the last days days, newest first.
func (db *DB) Revenue(ctx context.Context, days int) ([]RevenueDay, error) {
	rows, err := db.Pool.Query(ctx, q("Revenue"), days)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RevenueDay, error) {
		var r RevenueDay
		err := row.Scan(&r.Day, &r.CreditsPurchased, &r.Subscriptions, &r.Usage, &r.Overage)
		return r, err
	})
	return out, translate(err)
}

// UsageFoldedAt is when the rollup last folded raw usage into the daily and
// hourly rollups (nil: never): the rollups hold requests up to then.
func (db *DB) UsageFoldedAt(ctx context.Context) (*time.Time, error) {
	var t *time.Time
	err := db.Pool.QueryRow(ctx, q("UsageFoldedAt")).Scan(&t)
	return t, translate(err)
}
