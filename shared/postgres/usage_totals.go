package postgres

import "context"

// UsageTotals are counts over every recorded usage row.
type UsageTotals struct {
	Rows   int64
	Tokens int64
}

// UsageTotals counts the usage rows and their tokens.
func (db *DB) UsageTotals(ctx context.Context) (UsageTotals, error) {
	var t UsageTotals
	err := db.Pool.QueryRow(ctx, q("UsageTotals")).Scan(&t.Rows, &t.Tokens)
	return t, translate(err)
}
