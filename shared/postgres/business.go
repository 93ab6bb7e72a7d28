package postgres

import (
	"cmp"
	"context"
	"slices"
)

// BusinessStats are the operator's aggregate figures over recent usage.
// They hold no user ids: per-user figures are a distribution and ranks.
type BusinessStats struct {
	ActiveUsers1h, ActiveUsers24h, ActiveUsers30d int64
	// CallsPerUser24h: p50, p90, p99 and max requests per active user.
	CallsPerUser24h [4]float64
	// Top24h is the busiest users' requests and tokens, rank 1 first.
	Top24h []TopUser
	// Models24h is requests and tokens per model over the last day.
	Models24h []ModelUsage
}

// TopUser is one rank of the busiest users.
type TopUser struct {
	Calls, Tokens int64
}

// ModelUsage is a model's usage over a window.
type ModelUsage struct {
	Model                              string
	Requests, PromptTokens, OutputToks int64
	CachedTokens                       int64 // of PromptTokens, served from the engines' prefix caches
}

// Business computes BusinessStats with the top n users.
func (db *DB) Business(ctx context.Context, n int) (BusinessStats, error) {
	var b BusinessStats
	if err := db.Pool.QueryRow(ctx, q("ActiveUsers")).Scan(&b.ActiveUsers1h, &b.ActiveUsers24h, &b.ActiveUsers30d); err != nil {
		return b, translate(err)
	}
	rows, err := db.Pool.Query(ctx, q("CallsPerUser"), n)
	if err != nil {
		return b, translate(err)
	}
	for rows.Next() {
		var kind string
		var v [4]float64
		if err := rows.Scan(&kind, &v[0], &v[1], &v[2], &v[3]); err != nil {
			rows.Close()
			return b, translate(err)
		}
		if kind == "q" {
			b.CallsPerUser24h = v
		} else {
			b.Top24h = append(b.Top24h, TopUser{Calls: int64(v[0]), Tokens: int64(v[1])})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return b, translate(err)
	}
	// UNION ALL keeps no order of its own.
	slices.SortStableFunc(b.Top24h, func(x, y TopUser) int { return cmp.Compare(y.Calls, x.Calls) })
	rows, err = db.Pool.Query(ctx, q("UsageByModel"))
	if err != nil {
		return b, translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var m ModelUsage
		if err := rows.Scan(&m.Model, &m.Requests, &m.PromptTokens, &m.OutputToks, &m.CachedTokens); err != nil {
			return b, translate(err)
		}
		b.Models24h = append(b.Models24h, m)
	}
	return b, translate(rows.Err())
}
