package pool

import (
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Batch-class work (batch lines, service_tier=flex jobs: queue class
// config.BatchClass) fills only the engine slots interactive work leaves.
// While interactive jobs wait, the claim script (redisq ClaimShare) takes
// at most bulkRoom of them: on every endpoint, batch work may then hold at
// most floor(batch.max_slot_share × max_batch_size) slots, counted in
// endpoint.bulk by this worker as exactly as inflight itself; so too while
// interactive jobs run on its endpoints (interactiveRunning). With nothing
// interactive waiting or running they may fill every slot. Nothing is preempted: a
// batch job that started while the queue was empty finishes, and its slot
// goes to whatever waits then (interactive first). The class is claimed
// first on the aging turn (fairness.go), so under a saturated interactive
// load batch work still gets its share, never more.

// isBulk reports whether a job is batch-class work.
func isBulk(job sluice.Job) bool { return job.Priority >= config.BatchClass }

// take counts a job's slot on e.
func (e *endpoint) take(bulk bool) {
	e.inflight.Add(1)
	if bulk {
		e.bulk.Add(1)
	}
}

// put gives a job's slot on e back.
func (e *endpoint) put(bulk bool) {
	e.inflight.Add(-1)
	if bulk {
		e.bulk.Add(-1)
	}
}

// bulkFree is how many more batch-class jobs e may start while
// interactive jobs wait: what its share leaves, within its free slots.
func (e *endpoint) bulkFree() int64 {
	return max(min(e.free(), e.bulkMax-e.bulk.Load()), 0)
}

// interactiveRunning reports whether an interactive job runs on any of the
// runner's endpoints: batch work is then held to its share even with
// nothing interactive waiting (redisq.ClaimOrder.BulkCapped), because a slot
// it filled would make the next interactive arrival wait a whole batch
// job (nothing is preempted). With no interactive job running, batch work
// fills every slot.
func (r *runner) interactiveRunning() bool {
	for _, e := range r.eps {
		if e.inflight.Load() > e.bulk.Load() {
			return true
		}
	}
	return false
}

// bulkRoom is how many batch-class jobs a claim may take while
// interactive jobs wait: the endpoints' bulkFree together.
func (r *runner) bulkRoom() int64 {
	var n int64
	for _, e := range r.eps {
		if r.usable(e) {
			n += e.bulkFree()
		}
	}
	return n
}

// pickFor returns the endpoint a claimed job starts on: the one with the
// most free slots, and for a batch-class job one whose share is not used
// up when there is one (a job claimed with nothing interactive waiting may
// go anywhere, as may one reclaimed from a dead worker).
func (r *runner) pickFor(bulk bool) *endpoint {
	if bulk {
		var best *endpoint
		var bestFree int64
		for _, e := range r.eps {
			if f := e.bulkFree(); f > 0 && e.free() > bestFree && r.usable(e) {
				best, bestFree = e, e.free()
			}
		}
		if best != nil {
			return best
		}
	}
	return r.pick(nil)
}
