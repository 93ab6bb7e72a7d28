package pool_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestFailoverAndRetries runs a worker over two endpoints, one dead and one
// simulator that answers 429 to a third of requests: every job ends, the
// retried ones succeed on the live engine, and each job is recorded once.
func TestFailoverAndRetries(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := testenv.Name("pool")
	sim := startSim(t, model, 512,
		"--failure-injection-rate", "30", "--failure-types", "rate_limit")
	dead, _ := devstack.FreePort()
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 512, endpoints: ["http://127.0.0.1:%d", %q]}]}
pricing: null
worker: {retries: 6, retry_backoff: 5ms, usage_flush: 20ms}
`, model, dead, sim.URL))

	const n = 40
	ids := make([]string, n)
	for i := range ids {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model,
			Endpoint: sluice.EndpointChat, Priority: i % 3,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, model))}
		if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	deadline := time.Now().Add(60 * time.Second)
	succeeded := 0
	for _, id := range ids {
		for {
			js, err := h.q.Get(ctx, id, "")
			if err != nil {
				t.Fatal(err)
			}
			if js.Status.Terminal() {
				if js.Status == sluice.JobSucceeded {
					succeeded++
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s still %s", id, js.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if succeeded < n*9/10 {
		t.Fatalf("only %d of %d jobs succeeded despite retries", succeeded, n)
	}
	var rows, distinct int
	for time.Now().Before(deadline) {
		h.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id) FROM inference_requests`).Scan(&rows, &distinct) //nolint:errcheck
		if rows >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rows != n || distinct != n {
		t.Fatalf("usage rows %d (distinct %d), want exactly %d", rows, distinct, n)
	}
	h.stop(t)
}

// TestThrottleOnEngineMetrics reads three simulators' /metrics: one reports a
// near-full KV cache (--fake-metrics, the only way to get KV use offline),
// one a queue of its own, one is idle. The worker offers the full one only a
// probe slot, the queueing one fewer slots, the idle one its whole batch
// plus the margin.
func TestThrottleOnEngineMetrics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := testenv.Name("thr")
	var urls []string
	for _, fake := range []string{`{"kv-cache-usage":0.99}`, `{"waiting-requests":3,"running-requests":4}`, ""} {
		var extra []string
		if fake != "" {
			extra = []string{"--fake-metrics", fake}
		}
		sim := startSim(t, model, 512, extra...)
		urls = append(urls, fmt.Sprintf("%q", sim.URL))
	}
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 512, endpoints: [%s, %s, %s]}]}
pricing: null
dispatch: {batch_margin: 1, metrics_interval: 50ms, health_interval: 50ms}
`, model, urls[0], urls[1], urls[2]))
	want := []int64{1, 3, 5} // probe only; 4+1 less the 2 queued beyond the margin; 4+1
	deadline := time.Now().Add(20 * time.Second)
	for {
		eps := h.p.Endpoints()
		got := make([]int64, len(eps))
		ready := true
		for i, e := range eps {
			got[i] = e.Free
			ready = ready && e.Healthy && (e.Running >= 0 || e.KVCache >= 0)
		}
		if ready && fmt.Sprint(got) == fmt.Sprint(want) {
			if eps[0].KVCache < 0.98 || eps[1].Waiting != 3 {
				t.Fatalf("readings: %+v", eps)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("free slots %v, want %v (%+v)", got, want, eps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sig, err := h.p.Signals(ctx)
	if err != nil || len(sig) != config.Priorities || sig[0].Queued != 0 {
		t.Fatalf("signals: %+v %v", sig, err)
	}
	h.stop(t)
}

// TestOutputFilters: with filters on, an engine echoing secrets (the
// simulator's echo mode) has them redacted in whole and streamed results.
func TestOutputFilters(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := testenv.Name("flt")
	sim := startSim(t, model, 512, "--mode", "echo")
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 512, endpoints: [%q]}]}
pricing: null
filters: {enabled: true}
`, model, sim.URL))
	const secret = "write to alice@example.com with key sk-sluice-AbCdEfGhIjKlMnOpQrStUv12 now"
	for _, stream := range []bool{false, true} {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Stream: stream,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":100,"stream":%v}`, model, secret, stream))}
		if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		after := "0"
	read:
		for {
			evs, err := h.q.Events(ctx, j.ID, after, 10*time.Second)
			if err != nil || len(evs) == 0 {
				t.Fatalf("events: %v", err)
			}
			for _, e := range evs {
				after = e.ID
				switch e.Type {
				case "chunk":
					text.WriteString(e.Data)
				case "end":
					if e.Status != sluice.JobSucceeded {
						t.Fatalf("job %s: %s", e.Status, e.Error)
					}
					text.WriteString(e.Result)
					break read
				}
			}
		}
		out := text.String()
		if strings.Contains(out, "alice@") || strings.Contains(out, "AbCdEf") || !strings.Contains(out, "[REDACTED:email]") ||
			!strings.Contains(out, "[REDACTED:api_key]") {
			t.Fatalf("stream %v: secrets not redacted: %s", stream, out)
		}
	}
	h.stop(t)
}

// TestEngineDiesMidStream: a streamed job whose engine dies after output
// reached the client is not retried (the client would see text twice): it
// fails with stream_interrupted and is billed the tokens it produced.
func TestEngineDiesMidStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := testenv.Name("die")
	sim := startSim(t, model, 1024, "--inter-token-latency", "20ms")
	other := startSim(t, model, 1024)
	// The live endpoint is the second: the job starts on the first (more free slots, listed first).
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 1024, endpoints: [%q, %q]}]}
pricing: null
worker: {usage_flush: 20ms}
`, model, sim.URL, other.URL))
	for deadline := time.Now().Add(10 * time.Second); ; { // both endpoints in rotation
		eps := h.p.Endpoints()
		if eps[0].Healthy && eps[1].Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints: %+v", eps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Stream: true,
		Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":500,"ignore_eos":true,"stream":true}`, model))}
	if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	after, chunks, killed := "0", 0, false
	var end redisq.Event
	for end.Type == "" {
		evs, err := h.q.Events(ctx, j.ID, after, 20*time.Second)
		if err != nil || len(evs) == 0 {
			t.Fatalf("events: %v", err)
		}
		for _, e := range evs {
			after = e.ID
			switch e.Type {
			case "chunk":
				chunks++
				if chunks == 5 && !killed {
					killed = true
					sim.Stop() // the engine dies with output already relayed
				}
			case "end":
				end = e
			}
		}
	}
	if end.Status != sluice.JobFailed || !strings.Contains(end.Error, "stream_interrupted") {
		t.Fatalf("end: %+v after %d chunks", end, chunks)
	}
	var rows int
	var completion int64
	for deadline := time.Now().Add(10 * time.Second); rows == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(completion_tokens), 0) FROM inference_requests WHERE job_id = $1`, j.ID).Scan(&rows, &completion) //nolint:errcheck
	}
	if rows != 1 || completion < 4 || completion >= 500 {
		t.Fatalf("usage rows %d, completion tokens %d: want one row billing what was produced", rows, completion)
	}
	h.stop(t)
}

// harness is a worker running against real Redis and a fresh schema.
type harness struct {
	p      *pool.Pool
	q      *redisq.Queue
	db     *postgres.DB
	user   string // a free-tier user to own jobs
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

// startPool runs a worker on the configuration yml.
func startPool(t *testing.T, model, yml string) *harness {
	t.Helper()
	h := startPoolLater(t, model, yml)
	h.start()
	return h
}

// start runs the worker built by startPoolLater.
func (h *harness) start() { go func() { h.done <- h.p.Run(h.ctx) }() }

// startPoolLater builds a worker on the configuration yml; start runs it.
func startPoolLater(t *testing.T, model, yml string) *harness {
	t.Helper()
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{q: redisq.New(testenv.Redis(t), redisq.Options{EncodeError: openai.EncodeError, Shards: cfg.Jobs.Shards}),
		db: pgtest.New(t), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx, h.cancel = ctx, cancel
	t.Cleanup(cancel)
	u, err := h.db.UpsertUser(ctx, model+"@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	h.user = u.ID
	if h.p, err = pool.New(pool.Deps{Config: cfg, Log: slog.New(slog.DiscardHandler), Queue: h.q, Usage: h.db, Name: "t-" + model}); err != nil {
		t.Fatal(err)
	}
	return h
}

// stop drains the worker and fails the test if Run failed.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
}

// startSim starts a simulator of model with 4 sequences, stopped when the test ends.
func startSim(t *testing.T, model string, maxModelLen int, extra ...string) *devstack.Sim {
	t.Helper()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), model, maxModelLen, 4, "", extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	return sim
}
