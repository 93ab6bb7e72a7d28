package redisq_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// slimMax is the most a delivered synchronous job may keep (issue 16: "at
// most a few hundred bytes").
const slimMax = 512

// user is a user id as PostgreSQL writes them, so sizes are real ones.
const user = "0b6f1c9e-3d2a-4f7b-9c1e-5a8d2e4f6b10"

// runJob enqueues a job (reserved, async as asked) with a large body, runs
// and completes it with a large result; it returns the job.
func (b *bundle) runJob(t *testing.T, reserved, async bool) *sluice.Job {
	t.Helper()
	ctx := context.Background()
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, KeyID: "k1", Model: b.model, Endpoint: sluice.EndpointChat,
		Body:     json.RawMessage(`{"model":"x","messages":[{"role":"user","content":"` + strings.Repeat("p", 1500) + `"}]}`),
		Priority: 1, Async: async, Reserved: reserved, Trace: "00-" + strings.Repeat("a", 32) + "-" + strings.Repeat("b", 16) + "-01"}
	if reserved {
		j.Hold = "26|10|1|2|0|0|0|2026-12|" + b.model + "|0|0"
	}
	if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	e := b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{"object":"chat.completion","x":"` + strings.Repeat("r", 2000) + `"}`),
		Usage: &sluice.UsageEvent{JobID: j.ID, UserID: user, Usage: sluice.Usage{PromptTokens: 1234, CompletionTokens: 567, TotalTokens: 1801}}, EngineMS: 42}
	if ok, err := b.q.Complete(ctx, group, e, o); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	return j
}

func (b *bundle) memory(t *testing.T, key string) int64 {
	t.Helper()
	n, err := b.rdb.MemoryUsage(context.Background(), key).Result()
	if err != nil {
		return 0 // gone
	}
	return n
}

// TestDeliveredSlimsSyncJob: once delivered, a synchronous job keeps a few
// hundred bytes (status, usage, settlement inputs), its result stream is
// gone, GET still answers its status and usage, and a reserved job's record
// still waits, without expiry, for its settlement, which then gives it
// sync_retention, not result_ttl.
func TestDeliveredSlimsSyncJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{SyncRetention: 10 * time.Minute})
	j := b.runJob(t, true, false)
	jk, rk := rkey.JobKey(j.ID), rkey.ResultKey(j.ID)
	before := b.memory(t, jk) + b.memory(t, rk)
	if err := b.q.Delivered(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	t.Logf("job hash and result stream: %d bytes before delivery, %d after", before, b.memory(t, jk))
	if n := b.memory(t, jk); n == 0 || n > slimMax {
		t.Fatalf("delivered job hash: %d bytes (was %d with its result stream), want 1..%d", n, before, slimMax)
	}
	if n, _ := b.rdb.Exists(ctx, rk).Result(); n != 0 {
		t.Fatal("result stream kept after delivery")
	}
	js, err := b.q.Get(ctx, j.ID, user)
	if err != nil || js.Status != sluice.JobSucceeded || js.Usage == nil || js.Usage.PromptTokens != 1234 || js.Usage.CompletionTokens != 567 ||
		js.Result != nil || js.EndedAt == 0 || js.Model != b.model {
		t.Fatalf("get after delivery: %+v %v", js, err)
	}
	// Settlement still reads what it needs, and the record has no expiry
	// until it settled (money is never lost).
	pipe := b.rdb.Pipeline()
	cmd := redisq.JobSettleInputs(ctx, pipe, j.ID)
	pipe.Exec(ctx) //nolint:errcheck
	in, err := redisq.ParseSettleInputs(cmd)
	if err != nil || in.Hold != j.Hold || in.EngineMS != "42" || !strings.Contains(in.Usage, `"prompt_tokens":1234`) {
		t.Fatalf("settle inputs after delivery: %+v %v", in, err)
	}
	if ttl, _ := b.rdb.PTTL(ctx, jk).Result(); ttl != -1 {
		t.Fatalf("unsettled reserved job's record expires in %s", ttl)
	}
	if err := redisq.Settled(ctx, b.rdb, []string{j.ID}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := b.rdb.PTTL(ctx, jk).Result(); ttl <= 0 || ttl > 10*time.Minute {
		t.Fatalf("settled delivered job expires in %s, want sync_retention (10m)", ttl)
	}
	// A second delivery is harmless.
	if err := b.q.Delivered(ctx, j.ID); err != nil || b.memory(t, jk) > slimMax {
		t.Fatalf("second delivery: %v", err)
	}
}

// TestDeliveredAfterSettlement: a job settled before its caller read it has
// jobs.result_ttl; delivery cuts it to sync_retention. A job without a hold
// gets sync_retention at once.
func TestDeliveredAfterSettlement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{SyncRetention: 10 * time.Minute})
	j := b.runJob(t, true, false)
	if err := redisq.Settled(ctx, b.rdb, []string{j.ID}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	plain := b.runJob(t, false, false)
	for _, id := range []string{j.ID, plain.ID} {
		if err := b.q.Delivered(ctx, id); err != nil {
			t.Fatal(err)
		}
		if ttl, _ := b.rdb.PTTL(ctx, rkey.JobKey(id)).Result(); ttl <= 0 || ttl > 10*time.Minute {
			t.Fatalf("delivered job expires in %s, want at most 10m", ttl)
		}
		if n := b.memory(t, rkey.JobKey(id)); n > slimMax {
			t.Fatalf("%d bytes", n)
		}
	}
}

// TestDeliveredLeavesAsyncJobs: an async job's result is read later; it
// keeps it for result_ttl.
func TestDeliveredLeavesAsyncJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := b.runJob(t, false, true)
	if err := b.q.Delivered(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	js, err := b.q.Get(ctx, j.ID, user)
	if err != nil || len(js.Result) < 2000 {
		t.Fatalf("async job lost its result: %v", err)
	}
	if n, _ := b.rdb.Exists(ctx, rkey.ResultKey(j.ID)).Result(); n != 1 {
		t.Fatal("async job lost its result stream")
	}
}

// TestAbandonedJobSlimmedWhenItEnds: a synchronous job whose caller left
// while it ran is slimmed by the script that ends it, whether it completes
// or ends at its next start (cancelled).
func TestAbandonedJobSlimmedWhenItEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{SyncRetention: 10 * time.Minute})
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x","p":"` + strings.Repeat("p", 1500) + `"}`), Priority: 1}
	if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	e := b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	if err := b.q.Chunks(ctx, j.ID, []string{strings.Repeat("c", 500)}, true); err != nil {
		t.Fatal(err)
	}
	if st, err := b.q.Cancel(ctx, j.ID, user); err != nil || st != sluice.JobRunning {
		t.Fatalf("cancel: %s %v", st, err)
	}
	if err := b.q.Abandoned(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.Exists(ctx, rkey.ResultKey(j.ID)).Result(); n != 1 {
		t.Fatal("a running job's stream was cut before it ended")
	}
	o := redisq.Outcome{Status: sluice.JobCancelled, HTTP: 499, Result: []byte(strings.Repeat("r", 2000)),
		Usage: &sluice.UsageEvent{JobID: j.ID, UserID: user, Usage: sluice.Usage{PromptTokens: 9, CompletionTokens: 1}}}
	if ok, err := b.q.Complete(ctx, group, e, o); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	if n, _ := b.rdb.Exists(ctx, rkey.ResultKey(j.ID)).Result(); n != 0 {
		t.Fatal("abandoned job's result stream kept")
	}
	if n := b.memory(t, rkey.JobKey(j.ID)); n == 0 || n > slimMax {
		t.Fatalf("abandoned job hash: %d bytes", n)
	}
	if ttl, _ := b.rdb.PTTL(ctx, rkey.JobKey(j.ID)).Result(); ttl <= 0 || ttl > 10*time.Minute {
		t.Fatalf("abandoned job expires in %s", ttl)
	}
	if n, _ := b.rdb.XLen(ctx, rkey.UsageKey(rkey.Tag(b.model))).Result(); n != 1 {
		t.Fatalf("usage events = %d: what it used must still be billed", n)
	}

	// Abandoned while its entry was claimed by a worker that died: the next
	// start finds it cancelled and slims it.
	k := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x","p":"` + strings.Repeat("p", 1500) + `"}`), Priority: 1}
	if err := b.q.Enqueue(ctx, k, time.Minute); err != nil {
		t.Fatal(err)
	}
	e = b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	b.q.Cancel(ctx, k.ID, user) //nolint:errcheck
	if err := b.q.Abandoned(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.q.Start(ctx, e, group, "w2", b.model); err != nil || out != redisq.StartCancelled {
		t.Fatalf("restart: %s %v", out, err)
	}
	if n := b.memory(t, rkey.JobKey(k.ID)); n == 0 || n > slimMax {
		t.Fatalf("job cancelled at its restart: %d bytes", n)
	}
	if n, _ := b.rdb.Exists(ctx, rkey.ResultKey(k.ID)).Result(); n != 0 {
		t.Fatal("result stream kept")
	}
}

// TestCompleteSlimsSyncJob: complete.lua leaves a synchronous job's record
// as delivery leaves it and its result only in the result stream, marked
// Slim; GET reads the result from the stream until the caller takes it
// (ResultTaken), then shows status and usage only. A caller that leaves
// after the completion (Abandoned) still leaves the usage.
func TestCompleteSlimsSyncJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{SyncRetention: 10 * time.Minute})
	j := b.runJob(t, false, false)
	jk, rk := rkey.JobKey(j.ID), rkey.ResultKey(j.ID)
	if n := b.memory(t, jk); n == 0 || n > slimMax {
		t.Fatalf("completed sync job hash: %d bytes, want 1..%d", n, slimMax)
	}
	if ttl, _ := b.rdb.PTTL(ctx, jk).Result(); ttl <= 0 || ttl > 10*time.Minute {
		t.Fatalf("completed sync job expires in %s, want sync_retention", ttl)
	}
	evs, err := b.q.Events(ctx, j.ID, "0", time.Second)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Type != "end" || !evs[len(evs)-1].Slim || len(evs[len(evs)-1].Result) < 2000 {
		t.Fatalf("end event: %+v %v", evs, err)
	}
	js, err := b.q.Get(ctx, j.ID, user)
	if err != nil || len(js.Result) < 2000 || js.Usage == nil || js.Usage.PromptTokens != 1234 {
		t.Fatalf("get before the caller took it: %+v %v", js, err)
	}
	pipe := b.rdb.Pipeline()
	b.q.ResultTaken(ctx, pipe, j.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.Exists(ctx, rk).Result(); n != 0 {
		t.Fatal("result stream kept after it was taken")
	}
	js, err = b.q.Get(ctx, j.ID, user)
	if err != nil || js.Result != nil || js.Status != sluice.JobSucceeded || js.Usage == nil || js.Usage.CompletionTokens != 567 {
		t.Fatalf("get after: %+v %v", js, err)
	}
	// Its caller left between the completion and reading it.
	if err := b.q.Abandoned(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if js, err = b.q.Get(ctx, j.ID, user); err != nil || js.Usage == nil || js.Usage.PromptTokens != 1234 {
		t.Fatalf("get after a late abandon: %+v %v", js, err)
	}
	// Async jobs are not slimmed by their completion.
	a := b.runJob(t, false, true)
	evs, err = b.q.Events(ctx, a.ID, "0", time.Second)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Slim {
		t.Fatalf("async end event: %+v %v", evs, err)
	}
	if js, err := b.q.Get(ctx, a.ID, user); err != nil || len(js.Result) < 2000 {
		t.Fatalf("async get: %v", err)
	}
}

// TestCompleteReleasesLease: a completion given the job's concurrency lease
// removes the job from it before the end event is written, and the event
// says so (the submit then answers before its own release); another user's
// lease entry is untouched; without a lease the event says nothing.
func TestCompleteReleasesLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	user := testenv.Name("lease-user")
	lease := rkey.User(user).Lease
	t.Cleanup(func() { b.rdb.Del(context.Background(), lease) })
	for _, withLease := range []bool{true, false} {
		j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, KeyID: "k1", Model: b.model, Endpoint: sluice.EndpointChat,
			Body: json.RawMessage(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`), Priority: 1}
		if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		other := j.ID + "-other"
		if err := b.rdb.ZAdd(ctx, lease, redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: j.ID},
			redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: other}).Err(); err != nil {
			t.Fatal(err)
		}
		e := b.claim(t, "w1")
		if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
			t.Fatalf("start: %s %v", out, err)
		}
		o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{"object":"chat.completion"}`),
			Usage: &sluice.UsageEvent{JobID: j.ID, UserID: user, Usage: sluice.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}}}
		if withLease {
			o.Lease = lease
		}
		if ok, err := b.q.Complete(ctx, group, e, o); err != nil || !ok {
			t.Fatalf("complete: %v %v", ok, err)
		}
		_, err := b.rdb.ZScore(ctx, lease, j.ID).Result()
		if gone := errors.Is(err, redis.Nil); gone != withLease {
			t.Fatalf("lease %v: job's lease entry gone %v (%v)", withLease, gone, err)
		}
		if _, err := b.rdb.ZScore(ctx, lease, other).Result(); err != nil {
			t.Fatalf("another job's lease entry: %v", err)
		}
		evs, err := b.q.Events(ctx, j.ID, "0", time.Second)
		if err != nil || len(evs) == 0 || evs[len(evs)-1].Type != "end" || evs[len(evs)-1].LeaseReleased != withLease {
			t.Fatalf("lease %v: end event %+v %v", withLease, evs, err)
		}
	}
}

// TestSettledBatch: one Settled call for a batch over two models' tags (a
// script per tag): each ended reserved job gets the ttl, an erased one is
// dropped, a job still running and an id that is no job are left alone.
func TestSettledBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	other := setupOn(t, b.rdb, redisq.Options{}) // another model: another tag
	j1, j2, j3 := b.runJob(t, true, false), b.runJob(t, true, false), other.runJob(t, true, false)
	erased := other.runJob(t, true, false)
	if err := b.rdb.HSet(ctx, rkey.JobKey(erased.ID), "erased", "1").Err(); err != nil {
		t.Fatal(err)
	}
	runningID := rkey.NewJobID(b.model)
	running := rkey.JobKey(runningID)
	if err := b.rdb.HSet(ctx, running, "status", "running").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.rdb.Del(context.Background(), running) })
	for _, j := range []*sluice.Job{j1, j2, j3} {
		if ttl, _ := b.rdb.PTTL(ctx, rkey.JobKey(j.ID)).Result(); ttl != -1 {
			t.Fatalf("reserved job before its settlement: ttl %s, want none", ttl)
		}
	}
	ids := []string{j1.ID, erased.ID, j2.ID, runningID, j3.ID, "not-a-job"}
	if err := redisq.Settled(ctx, b.rdb, ids, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, j := range []*sluice.Job{j1, j2, j3} {
		if ttl, _ := b.rdb.PTTL(ctx, rkey.JobKey(j.ID)).Result(); ttl <= 0 || ttl > time.Hour {
			t.Fatalf("settled job %s: ttl %s, want at most 1h", j.ID, ttl)
		}
	}
	if n, _ := b.rdb.Exists(ctx, rkey.JobKey(erased.ID)).Result(); n != 0 {
		t.Fatal("an erased account's settled job record was kept")
	}
	if ttl, _ := b.rdb.PTTL(ctx, running).Result(); ttl != -1 {
		t.Fatalf("a running job's record: ttl %s, want none", ttl)
	}
}
