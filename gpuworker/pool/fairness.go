package pool

// agingEvery: one claim round in this many takes the priority classes
// lowest first, so a saturated higher priority delays the lower ones but
// never starves them (they get at least one round in agingEvery).
const agingEvery = 8

// agingTurn reports whether this claim round is the lower classes' turn.
func (r *runner) agingTurn() bool {
	r.rounds++
	return r.rounds%agingEvery == 0
}
