package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// LedgerGrant appends a prepaid credit grant and returns its id.
func (db *DB) LedgerGrant(ctx context.Context, userID, period string, micros int64, note string) (int64, error) {
	var id int64
	err := db.Pool.QueryRow(ctx, q("LedgerGrant"), userID, period, micros, note).Scan(&id)
	return id, translate(err)
}

// LedgerSettle appends settled jobs in one statement, skipping jobs already
// settled; it returns how many rows it wrote.
func (db *DB) LedgerSettle(ctx context.Context, es []LedgerEntry) (int64, error) {
	ids, err := db.LedgerSettled(ctx, es)
	return int64(len(ids)), err
}

// LedgerSettled is LedgerSettle returning the job ids of the rows it wrote
// (a job settled before is not among them).
func (db *DB) LedgerSettled(ctx context.Context, es []LedgerEntry) ([]string, error) {
	if len(es) == 0 {
		return nil, nil
	}
	n := len(es)
	users, kinds, jobs, periods, models := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	prompt, completion, included, credit, overage := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	debt, excess, unheld, tiers := make([]int64, n), make([]int64, n), make([]bool, n), make([]string, n)
	cached, saved := make([]int64, n), make([]int64, n)
	for i, e := range es {
		users[i], kinds[i], jobs[i], periods[i], models[i] = e.UserID, e.Kind, e.JobID, e.Period, e.Model
		prompt[i], completion[i], included[i], credit[i], overage[i] = e.PromptTokens, e.CompletionTokens, e.IncludedTokens, e.CreditMicros, e.OverageMicros
		debt[i], excess[i], unheld[i], tiers[i] = e.DebtMicros, e.ExcessTokens, e.Unheld, e.ServiceTier
		cached[i], saved[i] = e.CachedTokens, e.CachedSavedMicros
	}
	rows, err := db.Pool.Query(ctx, q("LedgerSettle"), users, kinds, jobs, periods, models, prompt, completion, included, credit, overage,
		debt, excess, unheld, tiers, cached, saved)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var id string
		err := row.Scan(&id)
		return id, err
	})
	return out, translate(err)
}

// LedgerHasJob reports whether a job's settlement is in the ledger.
func (db *DB) LedgerHasJob(ctx context.Context, jobID string) (bool, error) {
	var ok bool
	err := db.Pool.QueryRow(ctx, q("LedgerHasJob"), jobID).Scan(&ok)
	return ok, translate(err)
}

// LedgerBalance sums a user's ledger for period.
func (db *DB) LedgerBalance(ctx context.Context, userID, period string) (Balance, error) {
	var b Balance
	err := db.Pool.QueryRow(ctx, q("LedgerBalance"), userID, period).
		Scan(&b.CreditMicros, &b.IncludedTokens, &b.OverageMicros, &b.GrantIDs, &b.OpenDisputes)
	return b, translate(err)
}

// UserByEmail returns the user with this email.
func (db *DB) UserByEmail(ctx context.Context, email string) (sluice.User, error) {
	u, err := scanUserLimits(db.Pool.QueryRow(ctx, q("UserByEmail"), strings.TrimSpace(email)))
	return u, translate(err)
}
