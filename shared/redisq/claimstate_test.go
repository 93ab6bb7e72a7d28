package redisq_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// enqueueAt enqueues a plain job of user in class prio.
func (b *bundle) enqueueAt(t *testing.T, user string, prio int) *sluice.Job {
	t.Helper()
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Priority: prio}
	if err := b.q.Enqueue(context.Background(), j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestClaimDrained: a claim that took fewer than asked says Drained only
// when every class was empty, so the worker may sleep on the bell without
// an empty claim first; one that took fewer for another reason (asked for
// fewer, the batch cap, the scan window) is not Drained, and a job
// enqueued after a drained claim still wakes its bells.
func TestClaimDrained(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	claim := func(n int64, o redisq.ClaimOrder, bulkCap int64) ([]redisq.Entry, redisq.Bells) {
		t.Helper()
		es, bells, err := b.q.ClaimShare(ctx, group, "w", b.model, 2, n, o, bulkCap)
		if err != nil {
			t.Fatal(err)
		}
		return es, bells
	}
	if es, bells := claim(4, redisq.ClaimOrder{}, -1); len(es) != 0 || !bells.Drained || bells.Held {
		t.Fatalf("empty queue: %v %+v", es, bells)
	}
	b.enqueueAt(t, "u1", 0)
	b.enqueueAt(t, "u2", 1)
	es, bells := claim(4, redisq.ClaimOrder{}, -1)
	if len(es) != 2 || !bells.Drained {
		t.Fatalf("two of four: %v %+v", es, bells)
	}
	// Enqueued after the drained claim: its bells ring at once.
	b.enqueueAt(t, "u1", 1)
	if ok, err := b.q.WaitWork(ctx, b.model, bells, time.Second); !ok || err != nil {
		t.Fatalf("enqueue after a drained claim did not wake: %v %v", ok, err)
	}
	b.enqueueAt(t, "u1", 1)
	b.enqueueAt(t, "u1", 1)
	if es, bells := claim(2, redisq.ClaimOrder{}, -1); len(es) != 2 || bells.Drained {
		t.Fatalf("two of three queued: %v %+v", es, bells)
	}
	es, bells = claim(2, redisq.ClaimOrder{}, -1)
	if len(es) != 1 || !bells.Drained {
		t.Fatalf("the last one: %v %+v", es, bells)
	}
	// A job handed back sits in the stream, not the fair queue: taken, and
	// the claim drained.
	if err := b.q.Release(ctx, group, es[0]); err != nil {
		t.Fatal(err)
	}
	if es, bells := claim(3, redisq.ClaimOrder{}, -1); len(es) != 1 || !bells.Drained {
		t.Fatalf("handed back: %v %+v", es, bells)
	}
	// The batch class (class 1 here) held to its cap: fewer than asked, not drained.
	for range 3 {
		b.enqueueAt(t, "u3", 1)
	}
	if es, bells := claim(4, redisq.ClaimOrder{Bulk: true, BulkCapped: true}, 1); len(es) != 1 || bells.Drained {
		t.Fatalf("capped batch class: %v %+v", es, bells)
	}
	if es, bells := claim(4, redisq.ClaimOrder{Bulk: true, BulkCapped: true}, 2); len(es) != 2 || bells.Drained {
		t.Fatalf("capped batch class, the rest: %v %+v", es, bells)
	}
	if es, bells := claim(4, redisq.ClaimOrder{}, -1); len(es) != 0 || !bells.Drained {
		t.Fatalf("empty again: %v %+v", es, bells)
	}
	// A scan window of 2 over 3 queued jobs: 2 taken, 1 left, not drained.
	window := &redisq.Placement{Endpoints: []redisq.EndpointSlots{{ID: "e1", Free: 8}}, SpillAfter: time.Hour, TTL: time.Minute, MaxEntries: 100, Window: 2}
	for range 3 {
		b.enqueueAt(t, "u4", 1)
	}
	if es, bells := claim(8, redisq.ClaimOrder{Place: window}, -1); len(es) != 2 || bells.Drained || bells.Held {
		t.Fatalf("window of 2: %v %+v", es, bells)
	}
	if es, bells := claim(8, redisq.ClaimOrder{Place: window}, -1); len(es) != 1 || !bells.Drained {
		t.Fatalf("window, the last: %v %+v", es, bells)
	}
}

// TestClaimHeld: a prefix-aware claim that leaves every queued job to the
// worker holding its prefix takes nothing, is not Drained and says Held,
// so the worker looks again at spill_after.
func TestClaimHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	cfg := placeConfig(t, false)
	placeJob(t, b, cfg, "u1", promptA)
	if es := claimOn(t, b, "w1", time.Hour, 4, redisq.EndpointSlots{ID: "e1", Free: 4}); len(es) != 1 {
		t.Fatalf("first claim: %+v", es)
	}
	placeJob(t, b, cfg, "u1", promptA)
	p := &redisq.Placement{Endpoints: []redisq.EndpointSlots{{ID: "e2", Free: 4}}, SpillAfter: time.Hour, TTL: time.Minute, MaxEntries: 1000, Window: 64}
	es, bells, err := b.q.ClaimShare(context.Background(), group, "w2", b.model, 2, 4, redisq.ClaimOrder{Place: p}, -1)
	if err != nil || len(es) != 0 || bells.Drained || !bells.Held {
		t.Fatalf("left to w1: %v %+v %v", es, bells, err)
	}
	es = claimOn(t, b, "w1", time.Hour, 4, redisq.EndpointSlots{ID: "e1", Free: 4})
	if len(es) != 1 || es[0].Endpoint != "e1" {
		t.Fatalf("owner: %+v", es)
	}
}
