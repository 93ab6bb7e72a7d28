package pool

import (
	"context"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// This file holds the worker's metrics, spans and published status, so the
// job path in runner.go keeps one-line hooks.

// observeStart counts a start outcome and, for a job that runs, its queue
// wait (both ends by Redis's clock).
func (r *runner) observeStart(res redisq.StartResult) {
	if res.Err != nil {
		return
	}
	if c := res.Claimed; c != nil {
		r.p.Telemetry.JobStarted(r.model.Name, c.Job.Priority, res.Outcome, c.StartedAt.Sub(c.Job.CreatedAt))
		return
	}
	r.p.Telemetry.JobStarted(r.model.Name, 0, res.Outcome, -1)
}

// traceJob continues the job's trace: a span for the time it waited in the
// queue (recorded after the fact) and one for the job's run, under which
// the engine calls go. jctx comes back carrying the run span.
func (r *runner) traceJob(jctx context.Context, c *redisq.Claimed) (context.Context, telemetry.Span) {
	t := r.p.Telemetry
	if !t.Tracing() || c.Job.Trace == "" {
		return jctx, telemetry.Span{}
	}
	parent := t.Extract(jctx, c.Job.Trace)
	t.Record(parent, "queue.wait", c.Job.CreatedAt, c.StartedAt,
		telemetry.Attr("sluice.model", c.Job.Model), telemetry.Attr("sluice.job_id", c.Job.ID))
	jctx, span := t.Start(parent, "worker.job", telemetry.KindConsumer,
		telemetry.Attr("sluice.model", c.Job.Model), telemetry.Attr("sluice.job_id", c.Job.ID),
		telemetry.Attr("sluice.worker", r.p.Name))
	return jctx, span
}

// callEngine is one upstream call, in a client span whose context travels
// to the engine in the traceparent header.
func (r *runner) callEngine(ctx context.Context, ep *endpoint, job sluice.Job, onChunk func([]byte) error) (*engine.Result, error) {
	t := r.p.Telemetry
	body := r.engineBody(job)
	if !t.Tracing() {
		return ep.client.Do(ctx, job.Endpoint, body, job.Stream, onChunk)
	}
	ctx, span := t.Start(ctx, "engine.request", telemetry.KindClient,
		telemetry.Attr("server.address", ep.client.Base), telemetry.Attr("sluice.model", job.Model))
	res, err := ep.client.Do(engine.WithHeaders(ctx, t.InjectHTTP), job.Endpoint, body, job.Stream, onChunk)
	span.End(err)
	return res, err
}

// observeDone records a finished job's status, engine time, tokens and their
// list price (tokens, cached prompt tokens at their own price, the
// per-request price and engine time at the GPU-second price).
func (r *runner) observeDone(o redisq.Outcome, u sluice.Usage, engineTime time.Duration) {
	p := r.p.Config.Pricing[r.model.Name]
	cached := min(max(u.CachedTokens, 0), u.PromptTokens)
	cost := (u.PromptTokens-cached)*int64(p.InputTokens) + cached*int64(p.CachedInputPrice()) +
		u.CompletionTokens*int64(p.OutputTokens)
	if o.EngineMS > 0 || u.PromptTokens+u.CompletionTokens > 0 { // as settlement charges them
		cost += int64(p.PerRequest) + (o.EngineMS*int64(p.PerGPUSecond)+999)/1000
	}
	r.p.Telemetry.JobDone(r.model.Name, o.Status, engineTime, u, cost)
}

// publishLoop publishes the endpoints' state every second until ctx ends.
func (r *runner) publishLoop(ctx context.Context) {
	for ctx.Err() == nil {
		r.publish(ctx)
		sleep(ctx, time.Second)
	}
}

// publish exports the endpoints' health and load as metrics and to Redis,
// where the status API and the queue collector of any process read them.
func (r *runner) publish(ctx context.Context) {
	eps := make([]redisq.EndpointStatus, len(r.eps))
	for i, e := range r.eps {
		eps[i] = redisq.EndpointStatus{URL: e.client.Base, Healthy: e.healthy.Load() && r.usable(e), InFlight: e.inflight.Load(), Capacity: e.batch + e.margin}
		r.p.Telemetry.Endpoint(r.model.Name, e.client.Base, eps[i].Healthy, eps[i].InFlight, eps[i].Capacity)
	}
	if err := r.p.Queue.PublishEndpoints(ctx, r.model.Name, r.p.Name, eps, r.p.Config.Telemetry.StatusTTL); err != nil && ctx.Err() == nil {
		r.p.Log.WarnContext(ctx, "publish endpoint status failed", slog.String("model", r.model.Name), slog.String("err", err.Error()))
	}
}
