package pool

import "github.com/sluice-ai/sluice/shared/redisq"

// agingEvery: one claim round in this many takes the interactive priority
// classes lowest first, so a saturated higher priority delays the lower
// ones but never starves them (they get at least one round in agingEvery).
const agingEvery = 8

// bulkEvery: one claim round in this many is the batch class's turn
// (share.go): it is claimed first then, up to its share of the slots, so
// batch lines and flex jobs progress under a saturated interactive load,
// but less often than the lowest interactive class gets its aging turn.
const bulkEvery = 2 * agingEvery

// claimOrder is this claim round's order: highest class first, the batch
// class last; the lower interactive classes first on their aging turn; the
// batch class first (capped) on its own turn.
func (r *runner) claimOrder() redisq.ClaimOrder {
	r.rounds++
	return redisq.ClaimOrder{Bulk: true, LowestFirst: r.rounds%agingEvery == 0, BulkFirst: r.rounds%bulkEvery == agingEvery/2,
		BulkCapped: r.interactiveRunning()}
}
