package redisq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// noPoll keeps the safety poll out of a test: a missing notice then shows
// as a waiter that never wakes (the test's context ends it), not as a
// delay.
const noPoll = time.Hour

// TestWaitsShareConnections: 2,000 waiters of one process, each on its own
// job, all get every event in order, while the process's client opens no
// more connections than the direct waits plus the concurrent readers, and
// one subscription per tag.
func TestWaitsShareConnections(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := setup(t, redisq.Options{}) // the writer: a client of its own
	rdb := testenv.Redis(t)         // the waiters' client, whose pool is counted
	const direct, readers = 4, 8
	q := redisq.New(rdb, redisq.Options{WaitDirect: direct, WaitReaders: readers, WaitPoll: noPoll})

	const n, rounds = 2000, 5
	ids := make([]string, n)
	pipe := b.rdb.Pipeline()
	for i := range ids {
		ids[i] = rkey.NewJobID(b.model)
		pipe.HSet(ctx, rkey.JobKey(ids[i]), "status", "running")
		pipe.Expire(ctx, rkey.JobKey(ids[i]), 10*time.Minute)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, id := range ids {
			b.rdb.Del(context.Background(), rkey.JobKey(id), rkey.ResultKey(id))
		}
	})

	var registered, done sync.WaitGroup
	errs := make(chan error, n)
	registered.Add(n)
	done.Add(n)
	for _, id := range ids {
		go func() {
			defer done.Done()
			w := q.Watch(id)
			defer w.Close()
			registered.Done()
			last, got := "0", 0
			for got < rounds {
				evs, err := w.Next(ctx, last)
				if err != nil {
					errs <- fmt.Errorf("%s after %d events: %w", id, got, err)
					return
				}
				for _, ev := range evs {
					if ev.Type != "chunk" || ev.Data != fmt.Sprint(got) {
						errs <- fmt.Errorf("%s: event %d is %+v", id, got, ev)
						return
					}
					last = ev.ID
					got++
				}
			}
		}()
	}
	registered.Wait()
	if ws := q.WaitStats(); ws.Waiting != n-direct || ws.Subscriptions != 1 {
		t.Errorf("wait stats %+v, want %d waiting on 1 subscription", ws, n-direct)
	}
	// Appends come from a few writers, round by round, so most waiters are
	// already waiting when their stream grows.
	for r := range rounds {
		var wg sync.WaitGroup
		for part := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := part; i < n; i += 8 {
					if err := b.q.Chunks(ctx, ids[i], []string{fmt.Sprint(r)}, r == 0); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := rdb.PoolStats()
	// The pool keeps idle connections (30 min), so its total is the peak.
	if st.TotalConns > direct+readers {
		t.Errorf("the waiters' client opened %d pooled connections, want at most %d", st.TotalConns, direct+readers)
	}
	t.Logf("%d waiters × %d events: %d pooled connections", n, rounds, st.TotalConns)
}

// TestWatchSeesEveryScript: every script that appends to a result stream
// announces it (start, chunks, complete; cancel of a queued job), so a
// waiter that shares notices sees each event with no poll.
func TestWatchSeesEveryScript(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := setup(t, redisq.Options{})
	wq := redisq.New(testenv.Redis(t), redisq.Options{WaitDirect: -1, WaitPoll: noPoll})

	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Priority: 1, Stream: true}
	if err := b.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	w := wq.Watch(j.ID)
	defer w.Close()
	last := "0"
	next := func(want string) {
		t.Helper()
		evs, err := w.Next(ctx, last)
		if err != nil || len(evs) != 1 || evs[0].Type != want {
			t.Fatalf("want one %s event: %+v %v", want, evs, err)
		}
		last = evs[0].ID
	}
	e := b.claim(t, "w1")
	if out, _, err := b.q.Start(ctx, e, group, "w1", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	next("start")
	if err := b.q.Chunks(ctx, j.ID, []string{"a"}, true); err != nil {
		t.Fatal(err)
	}
	next("chunk")
	if ok, err := b.q.Complete(ctx, group, e, redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200}); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	next("end")

	queued := b.enqueue(t, time.Minute)
	wc := wq.Watch(queued.ID)
	defer wc.Close()
	if st, err := b.q.Cancel(ctx, queued.ID, "u1"); err != nil || st != sluice.JobCancelled {
		t.Fatalf("cancel: %s %v", st, err)
	}
	evs, err := wc.Next(ctx, "0")
	if err != nil || len(evs) != 1 || evs[0].Status != sluice.JobCancelled {
		t.Fatalf("cancelled job's end: %+v %v", evs, err)
	}
}

// TestWatchCancel: a waiter whose context ends gets the context's error,
// on a shared wait and on a direct one, and a closed waiter's slot is free
// for the next.
func TestWatchCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	for _, direct := range []int{-1, 1} {
		q := redisq.New(b.rdb, redisq.Options{WaitDirect: direct, WaitPoll: noPoll})
		for range 2 { // the second reuses the first's direct slot
			id := rkey.NewJobID(b.model)
			ctx, cancel := context.WithCancel(context.Background())
			w := q.Watch(id)
			res := make(chan error, 1)
			go func() {
				_, err := w.Next(ctx, "0")
				res <- err
			}()
			cancel()
			if err := <-res; !errors.Is(err, context.Canceled) {
				t.Fatalf("direct %d: Next after cancel: %v", direct, err)
			}
			w.Close()
			w.Close() // idempotent
			if ws := q.WaitStats(); ws.Waiting != 0 {
				t.Fatalf("a closed waiter is still registered: %+v", ws)
			}
		}
	}
}

// TestWatchSurvivesReconnect: when the hub's subscription connection dies,
// go-redis reconnects and resubscribes, and that confirmation makes every
// waiter of the channel re-read, so an append whose notice went to the dead
// connection (or to none) is still seen, with no safety poll.
func TestWatchSurvivesReconnect(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := setup(t, redisq.Options{})
	name := testenv.Name("hub") // the waiters' client, to find its subscription
	u := testenv.RedisURL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	rdb, err := rconn.Open(ctx, u+sep+"client_name="+name, rconn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	q := redisq.New(rdb, redisq.Options{WaitDirect: -1, WaitPoll: noPoll})
	id := rkey.NewJobID(b.model)
	if err := b.rdb.HSet(ctx, rkey.JobKey(id), "status", "running").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.rdb.Del(context.Background(), rkey.JobKey(id), rkey.ResultKey(id)) })
	w := q.Watch(id)
	defer w.Close()
	last := "0"
	for round := range 3 {
		if round > 0 {
			if n := killSubscriptions(ctx, t, b.rdb, name); n != 1 {
				t.Fatalf("round %d: killed %d subscription connections of the hub, want 1", round, n)
			}
		}
		if err := b.q.Chunks(ctx, id, []string{fmt.Sprint(round)}, round == 0); err != nil {
			t.Fatal(err)
		}
		evs, err := w.Next(ctx, last)
		if err != nil || len(evs) != 1 || evs[0].Data != fmt.Sprint(round) {
			t.Fatalf("round %d: %+v %v", round, evs, err)
		}
		last = evs[0].ID
	}
}

// killSubscriptions kills the shard-subscription connections of the client
// named name on every master, once there is one (the previous kill's
// reconnection may still be under way), and returns how many it killed.
func killSubscriptions(ctx context.Context, t *testing.T, rdb redis.UniversalClient, name string) int {
	t.Helper()
	for ctx.Err() == nil {
		if n := killSubscriptionsOnce(ctx, t, rdb, name); n > 0 {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

func killSubscriptionsOnce(ctx context.Context, t *testing.T, rdb redis.UniversalClient, name string) int {
	t.Helper()
	var mu sync.Mutex
	killed := 0
	kill := func(ctx context.Context, c *redis.Client) error {
		list, err := c.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if !strings.Contains(line, " name="+name+" ") || strings.Contains(line, " ssub=0 ") {
				continue
			}
			id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
			if err := c.ClientKillByFilter(ctx, "ID", id).Err(); err != nil {
				return err
			}
			mu.Lock()
			killed++
			mu.Unlock()
		}
		return nil
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, kill)
	case *redis.Client:
		err = kill(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return killed
}
