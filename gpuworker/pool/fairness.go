package pool

// agingEvery: one claim round in this many reads the priority streams
// lowest first, so a saturated higher priority delays the lower ones but
// never starves them (they get at least one round in agingEvery).
const agingEvery = 8

// readOrder is the order in which this claim round reads the priority
// streams: highest priority first, except every agingEvery-th round.
func (r *runner) readOrder() []string {
	r.rounds++
	if r.rounds%agingEvery != 0 {
		return r.streams
	}
	out := make([]string, len(r.streams))
	for i, s := range r.streams {
		out[len(out)-1-i] = s
	}
	return out
}
