package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// FoldUsage runs one rollup: under a transaction-scoped advisory lock (one
// runner at a time; a concurrent run returns Skipped), it folds raw usage
// and the ledger's postpaid overage inserted since the watermark up to the
// safe xid horizon, appends meter outbox rows, moves the watermark, and
// reconciles, all in one transaction.
func (db *DB) FoldUsage(ctx context.Context, prices []ModelPrices) (Fold, error) {
	var f Fold
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return f, translate(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit a no-op
	var locked bool
	if err := tx.QueryRow(ctx, q("RollupLock")).Scan(&locked); err != nil {
		return f, translate(err)
	}
	if !locked {
		f.Skipped = true
		return f, nil
	}
	// A fold of millions of rows aggregates in memory rather than spilling.
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		return f, translate(err)
	}
	// The horizon first, before this transaction writes and takes an xid.
	if err := tx.QueryRow(ctx, q("RollupHorizon")).Scan(&f.To); err != nil {
		return f, translate(err)
	}
	var ledgerFrom int64
	if err := tx.QueryRow(ctx, q("RollupWatermarks")).Scan(&f.From, &ledgerFrom); err != nil {
		return f, translate(err)
	}
	if f.To <= f.From && f.To <= ledgerFrom {
		return f, translate(tx.Commit(ctx)) // nothing new has ended since the last run
	}
	a := priceArrays(prices)
	from, to := fmt.Sprint(f.From), fmt.Sprint(f.To)
	var days []time.Time
	if err := tx.QueryRow(ctx, q("RollupFold"), from, to, a.models, a.in, a.out, a.req, a.gpu, a.cached).Scan(&f.HourlyRows, &f.DailyRows,
		&f.Folded.Requests, &f.Folded.PromptTokens, &f.Folded.CompletionTokens, &f.CostMicros, &days,
		&f.Folded.CachedTokens, &f.CachedSavedMicros); err != nil {
		return f, translate(err)
	}
	tag, err := tx.Exec(ctx, q("RollupOutbox"), fmt.Sprint(ledgerFrom), to)
	if err != nil {
		return f, translate(err)
	}
	f.OutboxRows = tag.RowsAffected()
	if _, err := tx.Exec(ctx, q("RollupAdvance"), to); err != nil {
		return f, translate(err)
	}
	if len(days) > 0 {
		if err := reconcile(ctx, tx, &f, days); err != nil {
			return f, err
		}
	}
	return f, translate(tx.Commit(ctx))
}

// prices is ModelPrices as the array parameters the list-price queries
// (RollupFold, UsageByKey) unnest.
type prices struct {
	models                    []string
	in, out, req, gpu, cached []int64
}

func priceArrays(ps []ModelPrices) prices {
	n := len(ps)
	a := prices{make([]string, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)}
	for i, p := range ps {
		a.models[i], a.in[i], a.out[i], a.req[i], a.gpu[i] = p.Model, p.InputMicros, p.OutMicros, p.RequestMicros, p.GPUSecondMicros
		a.cached[i] = p.CachedInputMicros
	}
	return a
}

// reconcile runs inside the fold's transaction, so it sees exactly the
// rollups it wrote and the raw rows below the horizon.
func reconcile(ctx context.Context, tx pgx.Tx, f *Fold, days []time.Time) error {
	r := &f.Reconcile
	first, last := slices.MinFunc(days, time.Time.Compare), slices.MaxFunc(days, time.Time.Compare)
	r.FirstDay, r.LastDay, r.Days = first, last, len(days)
	start := time.Now()
	defer func() { r.Took = time.Since(start) }()
	// Days that fill at least half their span are read as one range (a scan
	// of a year for a year of days); sparse ones, such as today plus a late
	// event from months ago, as one index range each.
	query, args := "RollupReconcile", []any{days, fmt.Sprint(f.To)}
	if span := int(last.Sub(first).Hours()/24) + 1; span <= 2*len(days) {
		query, args = "RollupReconcileSpan", append(args, first, last)
	}
	if err := tx.QueryRow(ctx, q(query), args...).Scan(
		&r.Raw.Requests, &r.Raw.PromptTokens, &r.Raw.CompletionTokens,
		&r.Daily.Requests, &r.Daily.PromptTokens, &r.Daily.CompletionTokens,
		&r.HourlyRequests, &r.HourlyTokens); err != nil {
		return translate(err)
	}
	if err := tx.QueryRow(ctx, q("RollupReconcileLedger"), fmt.Sprint(f.From), fmt.Sprint(f.To)).Scan(
		&r.Unsettled, &r.LedgerMismatch); err != nil {
		return translate(err)
	}
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	if r.Raw != r.Daily {
		r.Differences = append(r.Differences, fmt.Sprintf("%d days in %s..%s: raw usage %+v, daily rollup %+v",
			len(days), day(first), day(last), r.Raw, r.Daily))
	}
	if r.HourlyRequests != r.Daily.Requests || r.HourlyTokens != r.Daily.PromptTokens+r.Daily.CompletionTokens {
		r.Differences = append(r.Differences, fmt.Sprintf("%d days in %s..%s: hourly rollup %d requests %d tokens, daily %d requests %d tokens",
			len(days), day(first), day(last), r.HourlyRequests, r.HourlyTokens, r.Daily.Requests, r.Daily.PromptTokens+r.Daily.CompletionTokens))
	}
	if r.LedgerMismatch > 0 {
		r.Differences = append(r.Differences, fmt.Sprintf("%d folded jobs have ledger rows with other token counts", r.LedgerMismatch))
	}
	return nil
}

// EnsureUsagePartitions creates the monthly partitions of raw usage through
// ahead months after the current one, and returns how many it created.
func (db *DB) EnsureUsagePartitions(ctx context.Context, ahead int) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, q("RollupPartitions"), ahead).Scan(&n)
	return n, translate(err)
}

// MeterPending returns up to limit outbox rows due for sending.
func (db *DB) MeterPending(ctx context.Context, limit int) ([]MeterEvent, error) {
	rows, err := db.Pool.Query(ctx, q("MeterPending"), limit)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []MeterEvent
	for rows.Next() {
		var e MeterEvent
		var cust *string
		if err := rows.Scan(&e.ID, &e.UserID, &e.Identifier, &e.Value, &e.EventTime, &e.Attempts, &cust); err != nil {
			return nil, translate(err)
		}
		if cust != nil {
			e.StripeCustomerID = *cust
		}
		out = append(out, e)
	}
	return out, translate(rows.Err())
}

// MeterSent marks an outbox row sent to customer; note records why (a
// duplicate-identifier answer counts as sent).
func (db *DB) MeterSent(ctx context.Context, id int64, customer, note string) error {
	var n *string
	if note != "" {
		n = &note
	}
	_, err := db.Pool.Exec(ctx, q("MeterSent"), id, customer, n)
	return translate(err)
}

// MeterFailed leaves an outbox row pending with the error, retried after
// backoff; counted says whether this was a send attempt (a row waiting for
// its user's Stripe customer is not).
func (db *DB) MeterFailed(ctx context.Context, id int64, msg string, backoff time.Duration, counted bool) error {
	inc := 0
	if counted {
		inc = 1
	}
	_, err := db.Pool.Exec(ctx, q("MeterFailed"), id, msg, backoff.Seconds(), inc)
	return translate(err)
}
