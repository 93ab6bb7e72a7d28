package postgres

import (
	"context"
	"strings"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// LedgerEntry is one settled job as the ledger records it.
type LedgerEntry struct {
	UserID           string
	Kind             string // usage (ran on an engine) or cache (served from the response cache)
	JobID            string
	Period           string // YYYY-MM
	Model            string
	PromptTokens     int64
	CompletionTokens int64
	IncludedTokens   int64 // included tokens consumed
	CreditMicros     int64 // prepaid credit spent (>= 0; stored negated)
	OverageMicros    int64 // postpaid usage
}

// Balance is a user's standing as the ledger sums it.
type Balance struct {
	CreditMicros   int64   // prepaid credit left
	IncludedTokens int64   // included tokens used in the period
	OverageMicros  int64   // postpaid usage in the period
	GrantIDs       []int64 // every grant counted in CreditMicros
}

// LedgerGrant appends a prepaid credit grant and returns its id.
func (db *DB) LedgerGrant(ctx context.Context, userID, period string, micros int64, note string) (int64, error) {
	var id int64
	err := db.Pool.QueryRow(ctx, q("LedgerGrant"), userID, period, micros, note).Scan(&id)
	return id, translate(err)
}

// LedgerSettle appends settled jobs in one statement, skipping jobs already
// settled; it returns how many rows it wrote.
func (db *DB) LedgerSettle(ctx context.Context, es []LedgerEntry) (int64, error) {
	if len(es) == 0 {
		return 0, nil
	}
	n := len(es)
	users, kinds, jobs, periods, models := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	prompt, completion, included, credit, overage := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, e := range es {
		users[i], kinds[i], jobs[i], periods[i], models[i] = e.UserID, e.Kind, e.JobID, e.Period, e.Model
		prompt[i], completion[i], included[i], credit[i], overage[i] = e.PromptTokens, e.CompletionTokens, e.IncludedTokens, e.CreditMicros, e.OverageMicros
	}
	tag, err := db.Pool.Exec(ctx, q("LedgerSettle"), users, kinds, jobs, periods, models, prompt, completion, included, credit, overage)
	if err != nil {
		return 0, translate(err)
	}
	return tag.RowsAffected(), nil
}

// LedgerBalance sums a user's ledger for period.
func (db *DB) LedgerBalance(ctx context.Context, userID, period string) (Balance, error) {
	var b Balance
	err := db.Pool.QueryRow(ctx, q("LedgerBalance"), userID, period).
		Scan(&b.CreditMicros, &b.IncludedTokens, &b.OverageMicros, &b.GrantIDs)
	return b, translate(err)
}

// UserByEmail returns the user with this email.
func (db *DB) UserByEmail(ctx context.Context, email string) (sluice.User, error) {
	u, err := scanUserLimits(db.Pool.QueryRow(ctx, q("UserByEmail"), strings.TrimSpace(email)))
	return u, translate(err)
}
