package redisq_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

const group = rkey.GroupWorkers

type bundle struct {
	q      *redisq.Queue
	rdb    redis.UniversalClient
	model  string
	stream string
}

func setup(t *testing.T, opts redisq.Options) *bundle {
	t.Helper()
	return setupOn(t, testenv.Redis(t), opts)
}

// setupOn is setup on a given Redis (a second model beside a first).
func setupOn(t *testing.T, rdb redis.UniversalClient, opts redisq.Options) *bundle {
	t.Helper()
	b := &bundle{q: redisq.New(rdb, opts), rdb: rdb, model: testenv.Name("q")}
	b.stream = rkey.StreamKey(b.model, 1)
	for p := range 2 {
		if err := b.q.EnsureGroup(context.Background(), rkey.StreamKey(b.model, p), group); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		pattern := "sluice:{m:" + rkey.Tag(b.model) + "}:*" + b.model + "*"
		del := func(ctx context.Context, c redis.Cmdable) error {
			keys, _ := c.Keys(ctx, pattern).Result()
			if len(keys) > 0 {
				c.Del(ctx, keys...)
			}
			return nil
		}
		// KEYS on a cluster client reaches one node: ask every master.
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return del(ctx, m) }) //nolint:errcheck
		} else {
			del(ctx, rdb) //nolint:errcheck
		}
	})
	return b
}

func (b *bundle) enqueue(t *testing.T, timeout time.Duration) *sluice.Job {
	t.Helper()
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Priority: 1}
	if err := b.q.Enqueue(context.Background(), j, timeout); err != nil {
		t.Fatal(err)
	}
	return j
}

func (b *bundle) claim(t *testing.T, consumer string) redisq.Entry {
	t.Helper()
	es, _, err := b.q.Claim(context.Background(), group, consumer, b.model, 2, 1, false)
	if err != nil || len(es) != 1 || es[0].Stream != b.stream {
		t.Fatalf("read: %v %v", es, err)
	}
	return es[0]
}

func TestCompleteIsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := b.enqueue(t, time.Minute)
	if j.Deadline.Sub(j.CreatedAt) != time.Minute {
		t.Fatalf("deadline not set from Redis time: %+v", j)
	}
	e := b.claim(t, "w1")
	out, c, err := b.q.Start(ctx, e, group, "w1", b.model)
	if err != nil || out != redisq.StartRun || c.Job.ID != j.ID || c.Job.UserID != "u1" || c.Attempt != 1 || string(c.Job.Body) != `{"model":"x"}` {
		t.Fatalf("start: %s %+v %v", out, c, err)
	}
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{"ok":true}`),
		Usage: &sluice.UsageEvent{JobID: j.ID, UserID: "u1", Usage: sluice.Usage{PromptTokens: 2, CompletionTokens: 3}}, EngineMS: 1234}
	if first, err := b.q.Complete(ctx, group, e, o); err != nil || !first {
		t.Fatalf("complete: %v %v", first, err)
	}
	o.EngineMS = 9999
	if again, err := b.q.Complete(ctx, group, e, o); err != nil || again {
		t.Fatalf("a second completion must be a no-op: %v %v", again, err)
	}
	// The engine time settlement charges is the first completion's.
	if ms, err := b.rdb.HGet(ctx, rkey.JobKey(j.ID), "engine_ms").Result(); err != nil || ms != "1234" {
		t.Fatalf("engine_ms = %q %v, want 1234", ms, err)
	}
	n, _ := b.rdb.XLen(ctx, rkey.UsageKey(rkey.Tag(b.model))).Result()
	if n != 1 {
		t.Fatalf("usage events = %d, want exactly 1", n)
	}
	pend, _ := b.rdb.XPending(ctx, b.stream, group).Result()
	if pend.Count != 0 {
		t.Fatalf("entry still pending after completion: %+v", pend)
	}
	evs, err := b.q.Events(ctx, j.ID, "0", 0)
	if err != nil || len(evs) != 1 || evs[0].Type != "end" || evs[0].Result != `{"ok":true}` || evs[0].HTTP != 200 {
		t.Fatalf("events: %+v %v", evs, err)
	}
	js, err := b.q.Get(ctx, j.ID, "u1")
	if err != nil || js.Status != sluice.JobSucceeded || js.Usage.CompletionTokens != 3 {
		t.Fatalf("get: %+v %v", js, err)
	}
	if _, err := b.q.Get(ctx, j.ID, "someone-else"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("another owner must not see the job: %v", err)
	}
}

func TestExpiredJobNeverRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := b.enqueue(t, 5*time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	out, _, err := b.q.Start(ctx, b.claim(t, "w1"), group, "w1", b.model)
	if err != nil || out != redisq.StartExpired {
		t.Fatalf("start of an expired job: %s %v", out, err)
	}
	js, _ := b.q.Get(ctx, j.ID, "")
	if js.Status != sluice.JobExpired {
		t.Fatalf("status %s", js.Status)
	}
	if n, _ := b.rdb.XLen(ctx, rkey.UsageKey(rkey.Tag(b.model))).Result(); n != 0 {
		t.Fatal("an expired job was billed")
	}
}

func TestCancelQueued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := b.enqueue(t, time.Minute)
	if _, err := b.q.Cancel(ctx, j.ID, "intruder"); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("cancel by another user: %v", err)
	}
	st, err := b.q.Cancel(ctx, j.ID, "u1")
	if err != nil || st != sluice.JobCancelled {
		t.Fatalf("cancel: %s %v", st, err)
	}
	out, _, _ := b.q.Start(ctx, b.claim(t, "w1"), group, "w1", b.model)
	if out != redisq.StartDone {
		t.Fatalf("a cancelled job was started: %s", out)
	}
}

func TestReclaimAndDeadLetter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{MaxAttempts: 2})
	j := b.enqueue(t, time.Minute)
	e := b.claim(t, "dead-1")
	if out, _, _ := b.q.Start(ctx, e, group, "dead-1", b.model); out != redisq.StartRun {
		t.Fatal(out)
	}
	// dead-1 dies; w2 reclaims the idle entry.
	time.Sleep(10 * time.Millisecond)
	es, err := b.q.AutoClaim(ctx, group, "w2", b.stream, 5*time.Millisecond, 10)
	if err != nil || len(es) != 1 || es[0].JobID != j.ID {
		t.Fatalf("autoclaim: %v %v", es, err)
	}
	out, c, _ := b.q.Start(ctx, es[0], group, "w2", b.model)
	if out != redisq.StartRun || c.Attempt != 2 {
		t.Fatalf("second attempt: %s %+v", out, c)
	}
	// A heartbeat keeps it from being taken.
	time.Sleep(10 * time.Millisecond)
	if err := b.q.Heartbeat(ctx, group, "w2", b.stream, []string{es[0].ID}); err != nil {
		t.Fatal(err)
	}
	// Idle for 2 s at the least: a claim that ran late on a loaded machine
	// (make test runs each Redis package twice at once) must still see it as fresh.
	if es, _ := b.q.AutoClaim(ctx, group, "w3", b.stream, 2*time.Second, 10); len(es) != 0 {
		t.Fatalf("a heartbeated entry was stolen: %v", es)
	}
	// w2 dies too; the third claim dead-letters it.
	time.Sleep(60 * time.Millisecond)
	es, _ = b.q.AutoClaim(ctx, group, "w3", b.stream, 50*time.Millisecond, 10)
	if len(es) != 1 {
		t.Fatalf("third claim: %v", es)
	}
	if out, _, _ := b.q.Start(ctx, es[0], group, "w3", b.model); out != redisq.StartDead {
		t.Fatalf("want dead-letter, got %s", out)
	}
	if n, _ := b.rdb.XLen(ctx, rkey.DeadKey(b.model)).Result(); n != 1 {
		t.Fatalf("dead-letter entries = %d", n)
	}
	js, _ := b.q.Get(ctx, j.ID, "")
	if js.Status != sluice.JobFailed || js.Error == nil {
		t.Fatalf("dead job: %+v", js)
	}
}

func TestStreamedJobIsNotRerun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := b.enqueue(t, time.Minute)
	e := b.claim(t, "w1")
	b.q.Start(ctx, e, group, "w1", b.model) //nolint:errcheck
	if err := b.q.Chunks(ctx, j.ID, []string{`{"choices":[]}`}, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	es, _ := b.q.AutoClaim(ctx, group, "w2", b.stream, 5*time.Millisecond, 10)
	out, c, _ := b.q.Start(ctx, es[0], group, "w2", b.model)
	if out != redisq.StartInterrupted || c == nil || c.Job.ID != j.ID {
		t.Fatalf("a job whose output reached its client ran again: %s %+v", out, c)
	}
	// It stays running, for w2 to price what was shown and complete.
	if js, _ := b.q.Get(ctx, j.ID, ""); js.Status != sluice.JobRunning {
		t.Fatalf("interrupted job: %+v", js)
	}
	if shown, err := b.q.ShownChunks(ctx, j.ID); err != nil || len(shown) != 1 || shown[0] != `{"choices":[]}` {
		t.Fatalf("shown chunks: %q %v", shown, err)
	}
}

func TestQueueFull(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{MaxQueue: 2})
	b.enqueue(t, time.Minute)
	b.enqueue(t, time.Minute)
	err := b.q.Enqueue(context.Background(), &sluice.Job{ID: rkey.NewJobID(b.model), Model: b.model, Priority: 1}, time.Minute)
	if e := sluice.AsError(err); err == nil || e.Kind != sluice.KindUnavailable || e.Code != sluice.CodeNoCapacity {
		t.Fatalf("full queue: %v", err)
	}
}

func TestJobIDs(t *testing.T) {
	t.Parallel()
	id := rkey.NewJobID("llama-2-7b")
	if rkey.JobTag(id) != rkey.Tag("llama-2-7b") {
		t.Fatal("job id must carry its model's tag")
	}
	for _, bad := range []string{"", "job_", "job_zzzz" + id[8:], id + "0", "chatcmpl-1", "job_../../etc"} {
		if rkey.JobTag(bad) != "" {
			t.Errorf("rkey.JobTag(%q) accepted", bad)
		}
	}
	// Every key of one job lives in one Redis Cluster slot.
	tag := "{m:" + rkey.Tag("llama-2-7b") + "}"
	for _, k := range []string{rkey.JobKey(id), rkey.ResultKey(id), rkey.StreamKey("llama-2-7b", 0),
		rkey.UsageKey(rkey.Tag("llama-2-7b")), rkey.DeadKey("llama-2-7b")} {
		if !containsTag(k, tag) {
			t.Errorf("%s lacks hash tag %s", k, tag)
		}
	}
}

func containsTag(k, tag string) bool {
	for i := 0; i+len(tag) <= len(k); i++ {
		if k[i:i+len(tag)] == tag {
			return true
		}
	}
	return false
}

// One user flooding a priority class must not starve another of the same
// class, and a higher class goes first.
func TestClaimIsFair(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	add := func(user string, prio, n int) map[string]bool {
		ids := map[string]bool{}
		for range n {
			j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
				Body: json.RawMessage(`{}`), Priority: prio}
			if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
				t.Fatal(err)
			}
			ids[j.ID] = true
		}
		return ids
	}
	flood := add("flooder", 1, 100)
	// The flooder's first jobs run.
	es, _, err := b.q.Claim(ctx, group, "w", b.model, 2, 10, false)
	if err != nil || len(es) != 10 {
		t.Fatalf("claim: %d %v", len(es), err)
	}
	late := add("late", 1, 5)
	vip := add("vip", 0, 3)
	es, bell, err := b.q.Claim(ctx, group, "w", b.model, 2, 13, false)
	if err != nil || len(es) != 13 {
		t.Fatalf("claim: %d %v", len(es), err)
	}
	for i, e := range es[:3] {
		if !vip[e.JobID] || e.Stream != rkey.StreamKey(b.model, 0) {
			t.Fatalf("claim %d: want the higher class first, got %s", i, e.JobID)
		}
	}
	var lateN, floodN int
	for _, e := range es[3:] {
		switch {
		case late[e.JobID]:
			lateN++
		case flood[e.JobID]:
			floodN++
		}
	}
	// Turns alternate: 5 of the late user's and 5 of the flooder's.
	if lateN != 5 || floodN != 5 {
		t.Fatalf("late user got %d and flooder %d of 10 claims; want 5 and 5", lateN, floodN)
	}
	bl, err := b.q.Backlog(ctx, b.model, 2)
	if err != nil || bl[1].Queued != 85 || bl[1].Pending != 20 || bl[0].Pending != 3 {
		t.Fatalf("backlog: %+v %v", bl, err)
	}
	// Nothing enqueued since the claim: the wait times out; one enqueue wakes it.
	if ok, err := b.q.WaitWork(ctx, b.model, bell, 10*time.Millisecond); ok || err != nil {
		t.Fatalf("wait without work: %v %v", ok, err)
	}
	add("late", 1, 1)
	if ok, err := b.q.WaitWork(ctx, b.model, bell, time.Second); !ok || err != nil {
		t.Fatalf("wait after enqueue: %v %v", ok, err)
	}
}

// TestClaimLowestFirst: the anti-starvation turn takes the lowest class
// before a higher one that also has work.
func TestClaimLowestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	for _, prio := range []int{0, 2} {
		j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat,
			Body: json.RawMessage(`{}`), Priority: prio}
		if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for prio := range 3 {
		b.q.EnsureGroup(ctx, rkey.StreamKey(b.model, prio), group) //nolint:errcheck
	}
	es, _, err := b.q.Claim(ctx, group, "w", b.model, 3, 1, true)
	if err != nil || len(es) != 1 || es[0].Stream != rkey.StreamKey(b.model, 2) {
		t.Fatalf("lowest-first claim: %v %v", es, err)
	}
	es, _, err = b.q.Claim(ctx, group, "w", b.model, 3, 1, false)
	if err != nil || len(es) != 1 || es[0].Stream != rkey.StreamKey(b.model, 0) {
		t.Fatalf("normal claim: %v %v", es, err)
	}
}

// eraseUser is a user id of the test's own. An erase scans every job of the
// models' hash tags, which another test's model, or a job record an
// earlier run left to expire, may share; most tests' jobs belong to u1
// (TestEraseUserJobsManyModels erased 11 of its 8 once).
func eraseUser() string { return "erase-" + strconv.FormatInt(time.Now().UnixNano(), 36) }

// TestEraseUserJobs: an account's stored jobs (prompts and results) go; other
// users' stay.
func TestEraseUserJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	user := eraseUser()
	mine := b.enqueueAt(t, user, 1)
	other := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u2", Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{}`), Priority: 1}
	if err := b.q.Enqueue(ctx, other, time.Minute); err != nil {
		t.Fatal(err)
	}
	n, err := b.q.EraseUserJobs(ctx, user, []string{b.model})
	if err != nil || n != 1 {
		t.Fatalf("erased %d, %v; want 1", n, err)
	}
	if _, err := b.q.Get(ctx, mine.ID, ""); err == nil {
		t.Fatal("the deleted user's job is still readable")
	}
	if _, err := b.q.Get(ctx, other.ID, "u2"); err != nil {
		t.Fatalf("another user's job was erased: %v", err)
	}
}

// TestEraseUserJobsManyModels: on a cluster the models' tags sit on
// different masters, which are scanned at once (ForEachMaster); every job is
// counted once (run with -race: the scans share the count).
func TestEraseUserJobsManyModels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var models []string
	var first *bundle
	user := eraseUser()
	for range 8 {
		b := setup(t, redisq.Options{})
		if first == nil {
			first = b
		}
		b.enqueueAt(t, user, 1)
		models = append(models, b.model)
	}
	n, err := first.q.EraseUserJobs(ctx, user, models)
	if err != nil || n != len(models) {
		t.Fatalf("erased %d, %v; want %d", n, err, len(models))
	}
}

// Erasing an account never loses a charge: a queued reserved job is
// cancelled (its settle entry carries its hold's terms), a running one loses
// its prompt but still ends through its scripts, so its usage settles.
func TestEraseKeepsReservedJobsSettling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	user := eraseUser()
	job := func() *sluice.Job {
		j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
			Body: json.RawMessage(`{"model":"x"}`), Priority: 1, Reserved: true, Hold: "26|10|1|2|0|0|0|2026-12|" + b.model + "|0|0"}
		if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		return j
	}
	t.Cleanup(func() { b.rdb.Del(context.Background(), rkey.SettleKey(rkey.Tag(b.model))) })
	running := job()
	e := b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	queued := job()
	if n, err := b.q.EraseUserJobs(ctx, user, []string{b.model}); err != nil || n != 2 {
		t.Fatalf("erased %d, %v; want 2 (the queued job cancelled, the running one stripped)", n, err)
	}
	if erased, err := b.q.Erased(ctx, running.ID); err != nil || !erased {
		t.Fatalf("the running job is not flagged erased: %v %v", erased, err)
	}
	if erased, err := b.q.Erased(ctx, "job_unknown"); err != nil || erased {
		t.Fatalf("an unknown job reads as erased: %v %v", erased, err)
	}
	if body, _ := b.rdb.HGet(ctx, rkey.JobKey(running.ID), "body").Result(); body != "" {
		t.Fatalf("the running job's prompt was kept: %q", body)
	}
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{}`),
		Usage: &sluice.UsageEvent{JobID: running.ID, UserID: user, Usage: sluice.Usage{PromptTokens: 20, CompletionTokens: 7}}}
	if ok, err := b.q.Complete(ctx, group, e, o); err != nil || !ok {
		t.Fatalf("the running job could not end: %v %v", ok, err)
	}
	msgs, err := b.rdb.XRange(ctx, rkey.SettleKey(rkey.Tag(b.model)), "-", "+").Result()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("settle entries %v %v, want 2", msgs, err)
	}
	for _, m := range msgs {
		if m.Values["hold"] != running.Hold {
			t.Fatalf("settle entry without the hold's terms: %v", m.Values)
		}
		if m.Values["job"] == running.ID && m.Values["usage"] != `{"prompt_tokens":20,"completion_tokens":7,"total_tokens":0}` {
			t.Fatalf("settle entry of the running job: %v", m.Values)
		}
		if m.Values["job"] != running.ID && m.Values["job"] != queued.ID {
			t.Fatalf("settle entry of an unknown job: %v", m.Values)
		}
	}
}

// TestPayloadRefs: a job whose input and result live in the object store
// carries only their keys through Redis: the input key from enqueue to the
// worker's start, the result key to the end event and the job record.
func TestPayloadRefs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, redisq.Options{})
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat,
		BodyRef: "jobs/u1/in.json", Priority: 1, Async: true}
	if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	e := b.claim(t, "w1")
	out, c, err := b.q.Start(ctx, e, group, "w1", b.model)
	if err != nil || out != redisq.StartRun || c.Job.BodyRef != "jobs/u1/in.json" || len(c.Job.Body) != 0 {
		t.Fatalf("start: %s %+v %v", out, c, err)
	}
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, ResultRef: "jobs/u1/out.json",
		Usage: &sluice.UsageEvent{JobID: j.ID, UserID: "u1", Usage: sluice.Usage{PromptTokens: 2, CompletionTokens: 3}}}
	if first, err := b.q.Complete(ctx, group, e, o); err != nil || !first {
		t.Fatalf("complete: %v %v", first, err)
	}
	evs, err := b.q.Events(ctx, j.ID, "0", 0)
	if err != nil || len(evs) != 1 || evs[0].ResultRef != "jobs/u1/out.json" || evs[0].Result != "" {
		t.Fatalf("end event: %+v %v", evs, err)
	}
	js, err := b.q.Get(ctx, j.ID, "u1")
	if err != nil || js.ResultRef != "jobs/u1/out.json" || js.Result != nil || js.Status != sluice.JobSucceeded {
		t.Fatalf("get: %+v %v", js, err)
	}
	if raw, _ := json.Marshal(js); strings.Contains(string(raw), "jobs/u1") {
		t.Fatalf("the key must not reach the client: %s", raw)
	}
}

// TestErrorsThroughEncoder: every stored job error, the worker's (Complete)
// and the ones the scripts record (cancelled here), is the injected
// encoder's output: the queue encodes none itself.
func TestErrorsThroughEncoder(t *testing.T) {
	t.Parallel()
	enc := func(e *sluice.Error) []byte { return []byte(`enc:` + e.Code) }
	b := setup(t, redisq.Options{EncodeError: enc})
	ctx := context.Background()
	stored := func(id string) string { s, _ := b.rdb.HGet(ctx, rkey.JobKey(id), "error").Result(); return s }

	j := b.enqueue(t, time.Minute)
	e := b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	o := redisq.Outcome{Status: sluice.JobFailed, HTTP: 502, Error: sluice.ErrEngineDown}
	if _, err := b.q.Complete(ctx, group, e, o); err != nil {
		t.Fatal(err)
	}
	if got := stored(j.ID); got != "enc:"+sluice.CodeEngineError {
		t.Errorf("failed job's error %q", got)
	}

	queued := b.enqueue(t, time.Minute)
	if _, err := b.q.Cancel(ctx, queued.ID, "u1"); err != nil {
		t.Fatal(err)
	}
	if got := stored(queued.ID); got != "enc:"+sluice.CodeCancelled {
		t.Errorf("cancelled job's error %q", got)
	}
}
