package redisq_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// freePort returns a TCP port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis runs a private redis-server (args added), stopped when the test
// ends, and returns a client of it.
func startRedis(t testing.TB, args ...string) *redis.Client {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command("redis-server", append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "log")}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Skipf("redis-server not runnable: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	t.Cleanup(func() { c.Close() })
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %d did not start", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

// replicated starts a private master and one replica of it, linked.
func replicated(t testing.TB) (master, replica *redis.Client) {
	t.Helper()
	master = startRedis(t, "--repl-diskless-sync-delay", "0") // link at once, not after 5s
	replica = startRedis(t, "--replicaof", "127.0.0.1", strings.Split(master.Options().Addr, ":")[1])
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		info, _ := replica.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return master, replica
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica never linked: %s", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDurableWaitsForReplica: an enqueue, a completion and a pipelined batch
// made through Durable are on the replica when they return, with no WAIT
// timing out.
func TestDurableWaitsForReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicated(t)
	dur := redisq.NewDurable(master, 1, 10*time.Second, nil)
	q := redisq.New(master, redisq.Options{Durable: dur})
	j := &sluice.Job{ID: rkey.NewJobID("m"), UserID: "u", Model: "m", Endpoint: "/v1/chat/completions", Body: []byte(`{}`), Async: true}
	if err := q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	// No polling: WAIT returned only once the replica had the job.
	if st, err := replica.HGet(ctx, rkey.JobKey(j.ID), "status").Result(); err != nil || st != "queued" {
		t.Fatalf("replica: job status %q, %v", st, err)
	}
	done, err := q.Complete(ctx, rkey.GroupWorkers, redisq.Entry{Stream: rkey.StreamKey("m", 0), ID: "0-1", JobID: j.ID},
		redisq.Outcome{Status: sluice.JobSucceeded, Result: []byte(`{}`), HTTP: 200})
	if err != nil || !done {
		t.Fatalf("complete: %v, %v", done, err)
	}
	if st, err := replica.HGet(ctx, rkey.JobKey(j.ID), "status").Result(); err != nil || st != string(sluice.JobSucceeded) {
		t.Fatalf("replica: job status %q after completion, %v", st, err)
	}
	errs := dur.Pipelined(ctx, []string{"a", "b"}, func(p redis.Pipeliner, i int) redis.Cmder {
		return p.Set(ctx, []string{"a", "b"}[i], i, 0)
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if v, err := replica.MGet(ctx, "a", "b").Result(); err != nil || v[0] != "0" || v[1] != "1" {
		t.Fatalf("replica: %v, %v", v, err)
	}
	if n := dur.Timeouts(); n != 0 {
		t.Fatalf("timeouts = %d", n)
	}
}

// TestDurableTimeoutIsSuccess: with no replica left to acknowledge, the
// write is answered as done (it exists on the master) and the timed-out
// WAIT is counted.
func TestDurableTimeoutIsSuccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master, replica := replicated(t)
	if err := replica.SlaveOf(ctx, "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	dur := redisq.NewDurable(master, 1, 5*time.Millisecond, nil)
	err := dur.Do(ctx, "k", func(c redis.Cmdable) error { return c.Set(ctx, "k", "v", 0).Err() })
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := master.Get(ctx, "k").Result(); v != "v" {
		t.Fatalf("master: k = %q", v)
	}
	errs := dur.Pipelined(ctx, []string{"k2"}, func(p redis.Pipeliner, _ int) redis.Cmder { return p.Set(ctx, "k2", "v", 0) })
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if n := dur.Timeouts(); n != 2 {
		t.Fatalf("timeouts = %d, want 2", n)
	}
}

// TestDurableOnTestRedis: on the test Redis (a cluster when TEST_REDIS_URL
// names one), writes to keys of many slots run pinned to their masters and
// land; a master without replicas only counts timeouts.
func TestDurableOnTestRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Client(t)
	dur := redisq.NewDurable(rdb, 1, time.Millisecond, nil)
	q := redisq.New(rdb, redisq.Options{Durable: dur})
	model := redistest.Name("dur")
	var ids []string
	for range 12 {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: "u", Model: model, Endpoint: "/v1/chat/completions", Body: []byte(`{}`), Async: true}
		if err := q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = rkey.JobKey(id) + redistest.Name(":t")
	}
	for i, err := range dur.Pipelined(ctx, keys, func(p redis.Pipeliner, i int) redis.Cmder { return p.Set(ctx, keys[i], "v", time.Minute) }) {
		if err != nil {
			t.Fatalf("%s: %v", keys[i], err)
		}
	}
	for i, id := range ids {
		st, err := q.Get(ctx, id, "")
		if err != nil || st.Status != sluice.JobQueued {
			t.Fatalf("job %s: %+v, %v", id, st, err)
		}
		if v, _ := rdb.Get(ctx, keys[i]).Result(); v != "v" {
			t.Fatalf("%s = %q", keys[i], v)
		}
	}
	if n := dur.Timeouts(); n > int64(len(ids)+len(keys)) {
		t.Fatalf("timeouts = %d of %d writes", n, len(ids)+len(keys))
	}
}

// BenchmarkEnqueueWait measures what WAIT costs an enqueue: each iteration
// enqueues one job with WAIT off (pooled client) and one with WAIT on (the
// script and WAIT 1 on a connection pinned to the master), interleaved on
// the same private master and replica, and reports each one's median.
//
//	go test -run '^$' -bench EnqueueWait -benchtime 5000x ./shared/redisq/
func BenchmarkEnqueueWait(b *testing.B) {
	ctx := context.Background()
	master, _ := replicated(b)
	off := redisq.New(master, redisq.Options{})
	on := redisq.New(master, redisq.Options{Durable: redisq.NewDurable(master, 1, 100*time.Millisecond, nil)})
	model := redistest.Name("bench")
	var lat [2][]time.Duration
	b.ResetTimer()
	for range b.N {
		for i, q := range []*redisq.Queue{off, on} {
			j := &sluice.Job{ID: rkey.NewJobID(model), UserID: "u", Model: model, Endpoint: "/v1/chat/completions", Body: []byte(`{"x":1}`), Async: true}
			t0 := time.Now()
			if err := q.Enqueue(ctx, j, time.Minute); err != nil {
				b.Fatal(err)
			}
			lat[i] = append(lat[i], time.Since(t0))
		}
	}
	b.StopTimer()
	for i, name := range []string{"off", "on"} {
		slices.Sort(lat[i])
		b.ReportMetric(float64(lat[i][len(lat[i])/2].Microseconds()), "µs-median-"+name)
		b.ReportMetric(float64(lat[i][len(lat[i])*99/100].Microseconds()), "µs-p99-"+name)
	}
	b.ReportMetric(float64(on.Durable().Timeouts()), "wait-timeouts")
}

// BenchmarkPinnedConn measures what borrowing a pinned connection per write
// (Client.Conn, as Durable does) costs over the pooled client: each
// iteration runs one SET each way, interleaved, and reports the medians.
func BenchmarkPinnedConn(b *testing.B) {
	ctx := context.Background()
	c := startRedis(b)
	var lat [2][]time.Duration
	for range b.N {
		t0 := time.Now()
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			b.Fatal(err)
		}
		lat[0] = append(lat[0], time.Since(t0))
		t0 = time.Now()
		conn := c.Conn()
		if err := conn.Set(ctx, "k", "v", 0).Err(); err != nil {
			b.Fatal(err)
		}
		conn.Close()
		lat[1] = append(lat[1], time.Since(t0))
	}
	for i, name := range []string{"pooled", "pinned"} {
		slices.Sort(lat[i])
		b.ReportMetric(float64(lat[i][len(lat[i])/2].Microseconds()), "µs-median-"+name)
	}
}
