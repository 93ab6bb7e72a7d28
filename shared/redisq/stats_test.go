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

// TestQueueStats: depth counts waiting and claimed jobs, pending the claimed
// ones, and the lag is the oldest entry's age by Redis's clock; a trace
// context enqueued with a job comes back with it at start.
func TestQueueStats(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	ctx := context.Background()
	st, err := b.q.QueueStats(ctx, b.model, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[1].Depth != 0 || st[1].OldestAge != 0 {
		t.Fatalf("empty queue: %+v", st)
	}
	j := b.enqueue(t, time.Minute)
	b.enqueue(t, time.Minute)
	time.Sleep(20 * time.Millisecond)
	if e := b.claim(t, "w1"); e.JobID != j.ID {
		t.Fatalf("claimed %s, want the first job %s", e.JobID, j.ID)
	}
	st, err = b.q.QueueStats(ctx, b.model, 3)
	if err != nil {
		t.Fatal(err)
	}
	if st[1].Depth != 2 || st[1].Pending != 1 || st[1].OldestAge < 20*time.Millisecond || st[1].OldestAge > time.Minute {
		t.Errorf("priority 1: %+v, want depth 2, pending 1, lag >= 20ms", st[1])
	}
	if st[0].Depth != 0 || st[2].Depth != 0 {
		t.Errorf("other priorities: %+v", st)
	}
}

// TestTraceTravelsWithTheJob: the trace field is stored in the job hash and
// returned by start with the start time.
func TestTraceTravelsWithTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	ctx := context.Background()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Priority: 1, Trace: tp}
	if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	out, c, err := b.q.Start(ctx, b.claim(t, "w1"), group, "w1", b.model)
	if err != nil || out != redisq.StartRun {
		t.Fatalf("start: %v %v", out, err)
	}
	if c.Job.Trace != tp {
		t.Errorf("trace %q, want %q", c.Job.Trace, tp)
	}
	if c.StartedAt.Before(c.Job.CreatedAt) || c.StartedAt.Sub(c.Job.CreatedAt) > time.Minute {
		t.Errorf("started %v, created %v", c.StartedAt, c.Job.CreatedAt)
	}
}

// TestPublishedEndpointsLapse: a worker's published endpoints are visible
// until their ttl passes, then gone without anyone deleting them.
func TestPublishedEndpointsLapse(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	ctx := context.Background()
	eps := []redisq.EndpointStatus{{URL: "http://e1", Healthy: true, InFlight: 2, Capacity: 8}}
	// Long enough that a loaded machine still reads it before it lapses.
	if err := b.q.PublishEndpoints(ctx, b.model, "w-short", eps, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.q.PublishEndpoints(ctx, b.model, "w-long", eps, time.Minute); err != nil {
		t.Fatal(err)
	}
	ws, err := b.q.Endpoints(ctx, b.model)
	if err != nil || len(ws) != 2 {
		t.Fatalf("endpoints: %+v %v", ws, err)
	}
	if ws[0].Endpoints[0] != eps[0] {
		t.Errorf("endpoint %+v, want %+v", ws[0].Endpoints[0], eps[0])
	}
	time.Sleep(1100 * time.Millisecond)
	ws, err = b.q.Endpoints(ctx, b.model)
	if err != nil || len(ws) != 1 || ws[0].Worker != "w-long" || ws[0].ExpiresIn <= 0 {
		t.Fatalf("after the short ttl: %+v %v", ws, err)
	}
}
