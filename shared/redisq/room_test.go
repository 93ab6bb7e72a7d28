package redisq_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// TestHasRoom: HasRoom says what Enqueue would do: room below
// jobs.max_queue, none at it, per priority class.
func TestHasRoom(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{MaxQueue: 2})
	ctx := context.Background()
	id := rkey.NewJobID(b.model)
	for i := range 3 {
		room, err := b.q.HasRoom(ctx, id, b.model, 1)
		if err != nil || room != (i < 2) {
			t.Fatalf("after %d jobs: room %v, %v", i, room, err)
		}
		if i < 2 {
			b.enqueue(t, time.Minute)
		}
	}
	if room, err := b.q.HasRoom(ctx, id, b.model, 0); err != nil || !room {
		t.Fatalf("another class: room %v, %v", room, err)
	}
}
