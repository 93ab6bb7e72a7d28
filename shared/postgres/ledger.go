package postgres

import (
	"context"
	_ "embed"
	"strings"

	"github.com/sluice-ai/sluice/shared/sluice"
)

//go:embed ledger.sql
var ledgerSQL string

func init() {
	for name, text := range parseQueries(ledgerSQL) {
		queries[name] = text
	}
}

// LedgerEntry is one settled job (or cache hit) as the ledger records it.
type LedgerEntry struct {
	UserID           string
	Kind             string // usage or cache
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

// LedgerSettle appends a job's settlement unless the job is already settled;
// it reports whether this call wrote it.
func (db *DB) LedgerSettle(ctx context.Context, e LedgerEntry) (bool, error) {
	tag, err := db.Pool.Exec(ctx, q("LedgerSettle"), e.UserID, e.Kind, e.JobID, e.Period, e.Model,
		e.PromptTokens, e.CompletionTokens, e.IncludedTokens, -e.CreditMicros, e.OverageMicros)
	if err != nil {
		return false, translate(err)
	}
	return tag.RowsAffected() == 1, nil
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
	var u sluice.User
	err := db.Pool.QueryRow(ctx, q("UserByEmail"), strings.TrimSpace(email)).
		Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &u.Disabled, &u.CreatedAt)
	return u, translate(err)
}
