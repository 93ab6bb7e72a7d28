package submit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
)

// takenBatch is how long answered jobs' result streams gather before one
// pipeline deletes them all.
const takenBatch = 2 * time.Millisecond

// takenStreams deletes the result streams of answered synchronous jobs in
// batches: one pipeline for every stream answered within takenBatch,
// instead of a round trip per request. Only for a job whose completion
// already released its lease and slimmed its record (end event lease=1,
// slim, the result inline): the stream is then all that is left, and a
// deletion that is late or lost (the process exits) costs memory until the
// stream expires (jobs.result_ttl), nothing a limit or a caller sees.
type takenStreams struct {
	q   *redisq.Queue
	log *slog.Logger

	mu      sync.Mutex
	ids     []string
	running bool
}

// add queues jobID's result stream for deletion.
func (t *takenStreams) add(jobID string) {
	t.mu.Lock()
	t.ids = append(t.ids, jobID)
	start := !t.running
	t.running = true
	t.mu.Unlock()
	if start {
		go t.run()
	}
}

// run deletes batches until none is queued.
func (t *takenStreams) run() {
	for {
		time.Sleep(takenBatch)
		t.mu.Lock()
		ids := t.ids
		t.ids = nil
		if len(ids) == 0 {
			t.running = false
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pipe := t.q.Pipeline()
		for _, id := range ids {
			t.q.ResultTaken(ctx, pipe, id)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.log.WarnContext(ctx, "answered jobs' result streams not deleted; they expire", slog.Int("jobs", len(ids)), slog.String("err", err.Error()))
		}
		cancel()
	}
}
