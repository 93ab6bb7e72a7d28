package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/config"
)

// endpoint is one engine replica: its batch slots, health and last load
// reading.
type endpoint struct {
	client *engine.Client
	// id names the endpoint in the prefix→endpoint placement entries that
	// all workers share (a hash of its base URL: stable across restarts,
	// the same in every worker that lists the engine).
	id       string
	kind     string
	batch    int64 // max_batch_size
	margin   int64 // extra in flight that hides the claim gap
	kvHigh   float64
	stale    time.Duration // a load reading older than this is ignored
	inflight atomic.Int64
	// bulk is how many of inflight are batch-class jobs (batch lines,
	// flex): at most bulkMax while interactive jobs wait (share.go).
	bulk     atomic.Int64
	bulkMax  int64 // floor(batch.max_slot_share × max_batch_size)
	healthy  atomic.Bool
	takeOuts atomic.Int64 // times taken out of rotation
	load     atomic.Pointer[reading]
	// adapters are the LoRA adapters the engine lists (adapters.go); nil
	// until first read, and never read for a model without adapters.
	adapters atomic.Pointer[map[string]bool]

	mu    sync.Mutex
	alive context.Context // cancelled when the endpoint is taken out
	kill  context.CancelFunc
}

// reading is one scrape of an engine's /metrics.
type reading struct {
	engine.Load
	at time.Time
}

func newEndpoint(m config.Model, d config.Dispatch, base string) *endpoint {
	c := engine.New(base, m.MaxBatchSize)
	c.Kind = m.Engine
	sum := sha256.Sum256([]byte(base))
	e := &endpoint{client: c, id: hex.EncodeToString(sum[:6]), kind: m.Engine, batch: int64(m.MaxBatchSize), margin: int64(d.Margin()),
		kvHigh: d.KVCacheHigh, stale: 4 * d.MetricsInterval}
	e.alive, e.kill = context.WithCancel(context.Background())
	e.kill() // out until the first health check passes: an engine may still be loading
	return e
}

// free is how many more jobs the endpoint should take now: max_batch_size
// plus the margin, less what is in flight, less what the engine itself
// queues beyond the margin; nothing while its KV cache is near full.
func (e *endpoint) free() int64 {
	if !e.healthy.Load() {
		return 0
	}
	in := e.inflight.Load()
	f := e.batch + e.margin - in
	if r := e.load.Load(); r != nil && time.Since(r.at) < e.stale {
		if r.Waiting > int(e.margin) {
			f -= int64(r.Waiting) - e.margin // someone else fills it, or our view is behind
		}
		if r.KVCache >= e.kvHigh {
			f = min(f, 0)
		}
	}
	if f <= 0 && in == 0 {
		return 1 // a stuck metric must not stall the model: one job probes
	}
	return max(f, 0)
}

// aliveCtx is cancelled when the endpoint is next taken out.
func (e *endpoint) aliveCtx() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.alive
}

// takeOut removes the endpoint from rotation and cuts its in-flight
// requests, which are retried elsewhere unless they showed output.
func (e *endpoint) takeOut() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kill()
	was := e.healthy.Swap(false)
	if was {
		e.takeOuts.Add(1)
	}
	return was
}

// bringBack returns the endpoint to rotation.
func (e *endpoint) bringBack() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.healthy.Load() {
		return false
	}
	e.alive, e.kill = context.WithCancel(context.Background())
	e.healthy.Store(true)
	return true
}

// health polls an endpoint: it is taken out after health_failures failed
// polls in a row (errors, 503 while loading weights, timeouts) and comes
// back on the first good one.
func (r *runner) health(ctx context.Context, e *endpoint) {
	d := r.p.Config.Dispatch
	fails := 0
	for ctx.Err() == nil {
		ok := e.client.Healthy(ctx, 2*time.Second) && e.client.Ready(ctx, 2*time.Second)
		switch {
		case ok:
			fails = 0
			if e.bringBack() {
				r.p.Log.InfoContext(ctx, "endpoint in rotation", slog.String("model", r.model.Name), slog.String("endpoint", e.client.Base))
				r.signal()
			}
		case ctx.Err() == nil:
			fails++
			if fails >= d.HealthFailures && e.takeOut() {
				r.p.Telemetry.EndpointTakenOut(r.model.Name, e.client.Base, "health")
				r.p.Log.WarnContext(ctx, "endpoint taken out of rotation", slog.String("model", r.model.Name),
					slog.String("endpoint", e.client.Base), slog.Int("failed_checks", fails))
			}
		}
		sleep(ctx, d.HealthInterval)
	}
}

// scrape reads an endpoint's load from its /metrics. Engines without load
// metrics (Ollama, plain OpenAI-compatible servers) are filled by slot count
// alone; a failed scrape leaves the last reading to go stale.
func (r *runner) scrape(ctx context.Context, e *endpoint) {
	d := r.p.Config.Dispatch
	if d.MetricsInterval < 0 || !engine.HasMetrics(e.kind) {
		return
	}
	warned := false
	for ctx.Err() == nil {
		if e.healthy.Load() {
			l, err := e.client.Metrics(ctx, e.kind, time.Second)
			switch {
			case err == nil:
				e.load.Store(&reading{Load: l, at: time.Now()})
				warned = false
			case !warned && ctx.Err() == nil:
				warned = true
				r.p.Log.WarnContext(ctx, "engine metrics unreadable; filling by slot count", slog.String("endpoint", e.client.Base),
					slog.String("err", err.Error()))
			}
		}
		sleep(ctx, d.MetricsInterval)
	}
}

// moveTo moves a job's slot from e to next and returns next.
func (e *endpoint) moveTo(next *endpoint, bulk bool) *endpoint {
	e.put(bulk)
	next.take(bulk)
	return next
}
