package redisq_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// consumerRig is a stream of its own and a queue to consume it through.
type consumerRig struct {
	q      *redisq.Queue
	rdb    redis.UniversalClient
	stream string
}

func newConsumerRig(t *testing.T) *consumerRig {
	t.Helper()
	rdb := testenv.Redis(t)
	r := &consumerRig{q: redisq.New(rdb, redisq.Options{}), rdb: rdb, stream: testenv.Name("consumer-test")}
	t.Cleanup(func() { rdb.Del(context.Background(), r.stream) })
	return r
}

func (r *consumerRig) add(t *testing.T, vals ...string) []string {
	t.Helper()
	var ids []string
	for _, v := range vals {
		id, err := r.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: r.stream, Values: []any{"v", v}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// recorder collects what a handler was given, batch by batch.
type recorder struct {
	mu      sync.Mutex
	batches [][]string
	seen    chan string
}

func newRecorder() *recorder { return &recorder{seen: make(chan string, 100)} }

func (rec *recorder) note(ms []redisq.Message) {
	var b []string
	for _, m := range ms {
		b = append(b, m.Field("v"))
	}
	rec.mu.Lock()
	rec.batches = append(rec.batches, b)
	rec.mu.Unlock()
	for _, v := range b {
		rec.seen <- v
	}
}

// wait returns the next n values handed over, failing after timeout.
func (rec *recorder) wait(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	var out []string
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case v := <-rec.seen:
			out = append(out, v)
		case <-deadline:
			t.Fatalf("got %v, want %d values", out, n)
		}
	}
	return out
}

// run starts c until the test ends or the returned stop is called.
func run(t *testing.T, c *redisq.Consumer, handle func(context.Context, []redisq.Message)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx, handle) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func (r *consumerRig) pending(t *testing.T, group string) int64 {
	t.Helper()
	p, err := r.rdb.XPending(context.Background(), r.stream, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// drained waits until the handler's acks have left nothing pending and
// nothing in the stream.
func (r *consumerRig) drained(t *testing.T, group string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for r.pending(t, group) != 0 || r.rdb.XLen(context.Background(), r.stream).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after acks: pending %d, length %d, want 0 and 0", r.pending(t, group), r.rdb.XLen(context.Background(), r.stream).Val())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A consumer restarted under its name gets its own unacknowledged entries
// first, in pages of Count, then new ones; acked entries leave the stream
// and the pending list.
func TestConsumerOwnPendingFirst(t *testing.T) {
	r := newConsumerRig(t)
	o := redisq.ConsumerOptions{Group: "g", Name: "a", Streams: []string{r.stream}, Count: 2, Block: 50 * time.Millisecond,
		ClaimIdle: time.Hour, OwnPendingFirst: true}
	r.add(t, "p1", "p2", "p3")

	// First life: takes all three, acks none (it "crashes").
	first := newRecorder()
	stop := run(t, r.q.Consumer(o, nil), func(_ context.Context, ms []redisq.Message) { first.note(ms) })
	first.wait(t, 3, 5*time.Second)
	stop()
	if n := r.pending(t, "g"); n != 3 {
		t.Fatalf("pending after the crash = %d, want 3", n)
	}

	r.add(t, "n1", "n2")
	second := newRecorder()
	c := r.q.Consumer(o, nil)
	run(t, c, func(ctx context.Context, ms []redisq.Message) {
		second.note(ms)
		if err := c.Ack(ctx, ms...); err != nil && ctx.Err() == nil { // not the test's own stop
			t.Error(err)
		}
	})
	got := second.wait(t, 5, 5*time.Second)
	if want := []string{"p1", "p2", "p3", "n1", "n2"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	second.mu.Lock()
	if b := second.batches; len(b) < 3 || !slices.Equal(b[0], []string{"p1", "p2"}) || !slices.Equal(b[1], []string{"p3"}) {
		t.Errorf("pending pages %v, want [p1 p2] [p3] first", b)
	}
	second.mu.Unlock()
	r.drained(t, "g")
}

// Entries a dead consumer left unacknowledged go to another consumer once
// idle longer than ClaimIdle, and not before; each is handed over once.
func TestConsumerAutoClaimsDeadConsumersEntries(t *testing.T) {
	r := newConsumerRig(t)
	const idle = 400 * time.Millisecond
	o := redisq.ConsumerOptions{Group: "g", Name: "dead", Streams: []string{r.stream}, Count: 10, Block: 50 * time.Millisecond,
		ClaimIdle: idle, ClaimEvery: 50 * time.Millisecond}
	r.add(t, "a", "b", "c")
	start := time.Now() // the entries are delivered after this, so idle from later
	dead := newRecorder()
	stop := run(t, r.q.Consumer(o, nil), func(_ context.Context, ms []redisq.Message) { dead.note(ms) })
	dead.wait(t, 3, 5*time.Second)
	stop()

	o.Name = "alive"
	alive := newRecorder()
	c := r.q.Consumer(o, nil)
	run(t, c, func(ctx context.Context, ms []redisq.Message) {
		alive.note(ms)
		if err := c.Ack(ctx, ms...); err != nil && ctx.Err() == nil { // not the test's own stop
			t.Error(err)
		}
	})
	got := alive.wait(t, 3, 5*time.Second)
	if since := time.Since(start); since < idle {
		t.Errorf("claimed after %v, before ClaimIdle %v", since, idle)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("claimed %v, want a b c", got)
	}
	select {
	case v := <-alive.seen:
		t.Fatalf("%s handed over twice", v)
	case <-time.After(3 * idle):
	}
	r.drained(t, "g")
}

// A stream deleted under a running consumer (and so its group) is created
// again with its group, and entries added later are consumed.
func TestConsumerRecoversFromNoGroup(t *testing.T) {
	r := newConsumerRig(t)
	o := redisq.ConsumerOptions{Group: "g", Name: "a", Streams: []string{r.stream}, Count: 10, Block: 100 * time.Millisecond,
		ClaimIdle: time.Hour}
	rec := newRecorder()
	passes := make(chan struct{}, 1000)
	o.EachPass = func(context.Context) { passes <- struct{}{} }
	c := r.q.Consumer(o, nil)
	run(t, c, func(ctx context.Context, ms []redisq.Message) {
		rec.note(ms)
		if err := c.Ack(ctx, ms...); err != nil && ctx.Err() == nil { // not the test's own stop
			t.Error(err)
		}
	})
	<-passes // the group exists
	r.add(t, "before")
	rec.wait(t, 1, 5*time.Second)

	if err := r.rdb.Del(context.Background(), r.stream).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // reads now fail with NOGROUP (or are unblocked)
	r.add(t, "after")                  // recreates the stream, without the group
	if got := rec.wait(t, 1, 10*time.Second); got[0] != "after" {
		t.Fatalf("got %v after the stream was deleted, want [after]", got)
	}
	r.drained(t, "g")
}

// One consumer over the streams of several models (the settler's, usage
// writer's and webhook sender's case): every stream's entries are handed
// over, waiting or idle, also on a Redis Cluster, where the streams live in
// several slots and one XREADGROUP over them fails with CROSSSLOT.
func TestConsumerOverSeveralModels(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	var streams []string
	for range 4 {
		// A name of its own as the tag, not a model's 16-bit tag: another
		// test's model may share that, and its settler writes there.
		streams = append(streams, rkey.SettleKey(testenv.Name("m")))
	}
	t.Cleanup(func() {
		for _, s := range streams {
			rdb.Del(context.Background(), s)
		}
	})
	rec := newRecorder()
	c := redisq.NewConsumer(rdb, redisq.ConsumerOptions{Group: "g", Name: "c", Streams: streams, Block: 200 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.Run(ctx, func(ctx context.Context, ms []redisq.Message) {
		rec.note(ms)
		c.Ack(ctx, ms...) //nolint:errcheck
	})
	for round := range 2 { // waiting entries, then entries that arrive while it blocks
		for _, s := range streams {
			if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: s, Values: []any{"v", s}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		got := rec.wait(t, len(streams), 10*time.Second)
		slices.Sort(got)
		want := slices.Clone(streams)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: got %v, want one entry of each of %v", round, got, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestConsumerLinger: after a batch smaller than Count the consumer waits
// Linger before reading again, so entries that arrive meanwhile are handed
// over as one batch (one transaction for the usage writer, one pipeline for
// the settler) instead of one each; a full batch is followed by a read at
// once.
func TestConsumerLinger(t *testing.T) {
	t.Parallel()
	r := newConsumerRig(t)
	o := redisq.ConsumerOptions{Group: "g", Name: "a", Streams: []string{r.stream}, Count: 3, Block: 50 * time.Millisecond,
		ClaimIdle: time.Hour, Linger: 600 * time.Millisecond}
	rec := newRecorder()
	c := r.q.Consumer(o, nil)
	run(t, c, func(ctx context.Context, ms []redisq.Message) {
		rec.note(ms)
		if err := c.Ack(ctx, ms...); err != nil && ctx.Err() == nil { // not the test's own stop
			t.Error(err)
		}
	})
	r.add(t, "a1")
	rec.wait(t, 1, 5*time.Second)
	// Within the linger that followed the batch of one: these wait for it
	// and come together, and the full batch is followed by no linger.
	start := time.Now()
	r.add(t, "b1", "b2", "b3", "c1")
	got := rec.wait(t, 4, 5*time.Second)
	if waited := time.Since(start); waited > 500*time.Millisecond+o.Linger*2 {
		t.Errorf("the second and third batches took %s", waited)
	}
	if want := []string{"b1", "b2", "b3", "c1"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if b := rec.batches; len(b) != 3 || !slices.Equal(b[1], []string{"b1", "b2", "b3"}) || !slices.Equal(b[2], []string{"c1"}) {
		t.Fatalf("batches %v, want [a1] [b1 b2 b3] [c1]", b)
	}
}
