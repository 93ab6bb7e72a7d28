package redisq_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// TestBatchSlotExact: drivers on two connections taking a user's batch
// line slots at once get exactly lines_in_flight, then (after freeing)
// exactly lines_per_minute in the minute; a line already holding its slot
// takes it again without counting twice.
func TestBatchSlotExact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := redistest.Client(t), redistest.Client(t)
	user := redistest.Name("bu")
	var taken, full atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := a
			if i%2 == 1 {
				c = b
			}
			n, err := redisq.BatchSlot(ctx, c, user, fmt.Sprintf("j%d", i), 25, 60, time.Minute)
			if err != nil {
				t.Error(err)
			}
			switch n {
			case redisq.BatchSlotTaken:
				taken.Add(1)
			case redisq.BatchSlotInFlight:
				full.Add(1)
			}
		}()
	}
	wg.Wait()
	if taken.Load() != 25 || full.Load() != 175 {
		t.Fatalf("taken %d, refused for in-flight %d; want 25 and 175", taken.Load(), full.Load())
	}
	if n, _ := redisq.BatchInFlight(ctx, a, user); n != 25 {
		t.Fatalf("in flight %d", n)
	}
	// Free them all: now the minute's 60 starts bound it (25 spent).
	var ids []string
	for i := range 200 {
		ids = append(ids, fmt.Sprintf("j%d", i))
	}
	if err := redisq.BatchSlotFree(ctx, a, user, ids...); err != nil {
		t.Fatal(err)
	}
	got := 0
	for i := range 100 {
		n, err := redisq.BatchSlot(ctx, b, user, fmt.Sprintf("k%d", i), 1000, 60, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if n == redisq.BatchSlotTaken {
			got++
		} else if n != redisq.BatchSlotPerMinute {
			t.Fatalf("outcome %d", n)
		}
	}
	if got != 35 {
		t.Fatalf("took %d more in the minute, want 35", got)
	}
	// A line holding its slot takes it again (a driver resuming): not counted twice.
	if n, _ := redisq.BatchSlot(ctx, a, user, "k0", 1000, 60, time.Minute); n != redisq.BatchSlotTaken {
		t.Fatalf("re-take: %d", n)
	}
	if n, _ := redisq.BatchInFlight(ctx, a, user); n != 35 {
		t.Fatalf("in flight %d after the re-take", n)
	}
	a.Del(ctx, rkey.BatchInflightKey(user), rkey.BatchRateKey(user))
}

// TestBatchLineJobID: the same batch and line give the same job id, in the
// user's shard of the model; another line another id.
func TestBatchLineJobID(t *testing.T) {
	a := rkey.BatchLineJobID("m", "u1", 4, "batch_x", 7)
	if a != rkey.BatchLineJobID("m", "u1", 4, "batch_x", 7) || a == rkey.BatchLineJobID("m", "u1", 4, "batch_x", 8) {
		t.Fatal("not deterministic per line")
	}
	if rkey.JobTag(a) != rkey.ShardTags("m", 4)[rkey.UserShard("u1", 4)] {
		t.Fatalf("%s is not in the user's shard", a)
	}
}
