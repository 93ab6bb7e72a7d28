package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// runner serves one model: it claims as many jobs as its endpoints have
// free batch slots, highest priority first.
type runner struct {
	p       *Pool
	soft    context.Context // ends when the worker starts draining
	model   config.Model
	streams []string // by priority, 0 first
	eps     []*endpoint
	wake    chan struct{}
	rounds  uint64 // claim rounds, for readOrder's anti-starvation turn
}

func newRunner(p *Pool, m config.Model) *runner {
	r := &runner{p: p, model: m, wake: make(chan struct{}, 1)}
	for prio := range config.Priorities {
		r.streams = append(r.streams, rkey.StreamKey(m.Name, prio))
	}
	for _, u := range m.Endpoints {
		r.eps = append(r.eps, newEndpoint(m, p.Config.Dispatch, u))
	}
	return r
}

func (r *runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *runner) free() int64 {
	var n int64
	for _, e := range r.eps {
		n += e.free()
	}
	return n
}

// pick returns the healthy endpoint with the most free slots, or nil.
func (r *runner) pick(exclude *endpoint) *endpoint {
	var best *endpoint
	var bestFree int64
	for _, e := range r.eps {
		if e == exclude {
			continue
		}
		if f := e.free(); f > bestFree {
			best, bestFree = e, f
		}
	}
	return best
}

// dispatch is the claim loop. Jobs wait in Redis, never here: it claims only
// what free slots can start now, through the fair claim script.
func (r *runner) dispatch(ctx, hard context.Context, jobs *sync.WaitGroup) {
	r.soft = ctx
	q, log := r.p.Queue, r.p.Log
	claimEvery := r.p.Config.Worker.ClaimIdle / 4
	lastClaim := time.Time{}
	// A restarted worker with the same name first takes back its own pending entries.
	for _, s := range r.streams {
		if es, err := q.Pending(ctx, rkey.GroupWorkers, r.p.Name, s, 1000); err == nil {
			r.launch(hard, jobs, es)
		}
	}
	for ctx.Err() == nil {
		free := r.free()
		if free <= 0 {
			select {
			case <-r.wake:
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		var entries []redisq.Entry
		var err error
		if time.Since(lastClaim) >= claimEvery {
			lastClaim = time.Now()
			for _, s := range r.streams {
				if int64(len(entries)) >= free {
					break
				}
				es, cerr := q.AutoClaim(ctx, rkey.GroupWorkers, r.p.Name, s, r.p.Config.Worker.ClaimIdle, free-int64(len(entries)))
				if cerr != nil {
					err = cerr
					break
				}
				if len(es) > 0 {
					log.Info("reclaimed jobs of a dead worker", slog.String("model", r.model.Name), slog.Int("jobs", len(es)))
					r.p.Telemetry.JobsReclaimed(r.model.Name, len(es))
					// There may be more: look again as soon as slots free up.
					lastClaim = time.Time{}
				}
				entries = append(entries, es...)
			}
		}
		if err == nil && int64(len(entries)) < free {
			var es []redisq.Entry
			var bell string
			es, bell, err = q.Claim(ctx, rkey.GroupWorkers, r.p.Name, r.model.Name, len(r.streams), free-int64(len(entries)), r.agingTurn())
			entries = append(entries, es...)
			if err == nil && len(entries) == 0 {
				// Nothing queued: sleep until an enqueue rings the bell.
				_, err = q.WaitWork(ctx, r.model.Name, bell, time.Second)
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("claim failed", slog.String("model", r.model.Name), slog.String("err", err.Error()))
				sleep(ctx, time.Second)
			}
			continue
		}
		r.launch(hard, jobs, entries)
	}
}

// launch starts a batch of claimed entries in one round trip and runs each
// job that may run, on the endpoint with the most free slots.
func (r *runner) launch(ctx context.Context, jobs *sync.WaitGroup, es []redisq.Entry) {
	if len(es) == 0 {
		return
	}
	for i, res := range r.p.Queue.StartMany(ctx, es, rkey.GroupWorkers, r.p.Name, r.model.Name) {
		if res.Err != nil {
			if ctx.Err() == nil {
				r.p.Log.Warn("start failed; the job stays pending and will be reclaimed",
					slog.String("job_id", es[i].JobID), slog.String("err", res.Err.Error()))
			}
			continue
		}
		r.observeStart(res)
		if res.Outcome != redisq.StartRun {
			continue
		}
		ep := r.pick(nil)
		if ep == nil {
			// Only after a restart with no endpoint in rotation: the job waits in Redis, not here.
			r.handBack(ctx, res.Claimed.Entry)
			continue
		}
		ep.inflight.Add(1)
		jobs.Add(1)
		go func(c *redisq.Claimed) {
			defer jobs.Done()
			defer r.signal()
			r.run(ctx, c, ep)
		}(res.Claimed)
	}
}

// run executes one started job and completes it.
func (r *runner) run(ctx context.Context, c *redisq.Claimed, ep *endpoint) {
	p := r.p
	q := p.Queue
	e := c.Entry
	release := func() { ep.inflight.Add(-1) }
	job := c.Job
	jctx, cancel := context.WithDeadline(ctx, job.Deadline)
	defer cancel()
	t := &task{cancel: cancel, entry: e}
	p.mu.Lock()
	p.running[job.ID] = t
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.running, job.ID)
		p.mu.Unlock()
	}()
	if job.BodyRef != "" && !r.fetchInput(ctx, c, &job, release) {
		return
	}

	jctx, span := r.traceJob(jctx, c)
	started := time.Now()
	var chunks *chunkWriter
	var onChunk func([]byte) error
	if job.Stream {
		chunks = newChunkWriter(ctx, q, job.ID)
		onChunk = chunks.add
		if p.redact != nil {
			fs := p.redact.Stream()
			onChunk = func(b []byte) error { return chunks.add(fs.Chunk(b)) }
		}
	}
	first := true // no output has been relayed: a retry cannot show text twice
	var res *engine.Result
	var err error
	backoff := p.Config.Worker.RetryBackoff
	var engineTime time.Duration // time in engine calls: what the GPU-second price charges
	var ended failure = -1       // failEngineDown or a spent failRequest: how the job ends
	for try := 0; ; try++ {
		callStart := time.Now()
		res, err = r.call(jctx, ep, job, onChunk)
		engineTime += time.Since(callStart)
		first = res == nil || res.Chunks == 0
		var ee *engine.Error
		if err == nil || !errors.As(err, &ee) || jctx.Err() != nil || !first {
			break
		}
		f := r.classify(jctx, ep, ee, errors.Is(err, errTakenOut))
		if f == failFinal {
			break
		}
		if f == failEngineDown {
			ended = f
			break
		}
		if f == failRefused {
			// Nothing reached the engine: the endpoint is down. The job runs
			// on another one, or waits in Redis (no attempt spent).
			if ep.takeOut() {
				p.Telemetry.EndpointTakenOut(r.model.Name, ep.client.Base, "refused")
				p.Log.Warn("endpoint taken out of rotation", slog.String("model", r.model.Name),
					slog.String("endpoint", ep.client.Base), slog.String("err", err.Error()))
			}
			next := r.pick(ep)
			if next == nil || r.soft.Err() != nil {
				ep.inflight.Add(-1)
				if chunks != nil {
					chunks.close() //nolint:errcheck // nothing was shown
				}
				r.handBack(ctx, e)
				return
			}
			ep.inflight.Add(-1)
			next.inflight.Add(1)
			ep = next
			continue
		}
		if f == failCapacity && try >= p.Config.Worker.Retries {
			break
		}
		if f == failRequest {
			// The request's own failure: trying again spends an attempt.
			n, serr := q.SpendAttempt(context.WithoutCancel(ctx), job.ID, p.Name)
			if serr != nil {
				break // reclaimed or final elsewhere: it fails here with this error
			}
			if n > q.MaxAttempts() {
				ended = f
				break
			}
		}
		p.Telemetry.EngineRetry(job.Model)
		if next := r.pick(ep); next != nil {
			ep.inflight.Add(-1)
			next.inflight.Add(1)
			ep = next
		} else {
			sleep(jctx, backoff)
			backoff *= 2
		}
	}
	release()
	latency := time.Since(started)
	if chunks != nil {
		// Every chunk is in the result stream before the end event.
		if shown, cerr := chunks.close(); cerr != nil && err == nil {
			err = cerr
		} else if shown {
			first = false
		}
	}

	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: http.StatusOK}
	var usage sluice.Usage
	if res != nil {
		usage = res.Usage
		if !job.Stream {
			o.Result = res.Body
			if p.redact != nil {
				o.Result = p.redact.Body(res.Body)
			}
		}
	}
	if err != nil {
		var ee *engine.Error
		errors.As(err, &ee)
		switch {
		case t.cancelled.Load():
			o.Status, o.HTTP = sluice.JobCancelled, 499
			o.Error = &sluice.ErrorBody{Message: "The job was cancelled.", Type: "invalid_request_error", Code: sluice.CodeCancelled}
		case ctx.Err() != nil && jctx.Err() != nil && !errors.Is(jctx.Err(), context.DeadlineExceeded):
			// Shutdown abort: hand the job back unless its client already saw output.
			if first {
				if rerr := q.Release(context.WithoutCancel(ctx), rkey.GroupWorkers, e); rerr == nil {
					return
				}
			}
			o.Status, o.HTTP = sluice.JobFailed, http.StatusServiceUnavailable
			o.Error = &sluice.ErrorBody{Message: "The worker shut down while the job was running.", Type: "server_error", Code: sluice.CodeStreamInterrupted}
		case errors.Is(jctx.Err(), context.DeadlineExceeded):
			o.Status, o.HTTP = sluice.JobFailed, http.StatusGatewayTimeout
			o.Error = &sluice.ErrorBody{Message: "The job's deadline passed while it ran.", Type: "server_error", Code: sluice.CodeDeadlineExceeded}
		case !first:
			// Output already reached the client: a retry would show it text
			// twice. It fails and pays for what it produced.
			o.Status, o.HTTP = sluice.JobFailed, http.StatusBadGateway
			o.Error = &sluice.ErrorBody{Message: "The inference engine failed after part of the output was streamed; the stream cannot be resumed.",
				Type: "server_error", Code: sluice.CodeStreamInterrupted}
		case ended == failEngineDown:
			// Not tried on another engine: a request that crashed this one
			// could crash every replica in turn.
			o.Status, o.HTTP = sluice.JobFailed, http.StatusBadGateway
			o.Error = &sluice.ErrorBody{Message: "The inference engine failed while running the job; it is not retried.",
				Type: "server_error", Code: sluice.CodeEngineError}
		case ended == failRequest:
			o.Status, o.HTTP = sluice.JobFailed, http.StatusBadGateway
			o.Error = &sluice.ErrorBody{Message: fmt.Sprintf("The inference engine failed the job on each of its %d attempts; it is not tried again.", q.MaxAttempts()),
				Type: "server_error", Code: sluice.CodeMaxAttempts}
		case ee != nil && ee.Body != nil:
			o.Status, o.HTTP, o.Error = sluice.JobFailed, ee.Status, ee.Body
		default:
			o.Status, o.HTTP = sluice.JobFailed, http.StatusBadGateway
			o.Error = &sluice.ErrorBody{Message: "The inference engine could not be reached.", Type: "server_error", Code: sluice.CodeServiceUnavailable}
		}
		usage = r.billFailed(ctx, job, res, err, t.cancelled.Load())
		if o.Status == sluice.JobFailed && ee != nil && ee.Retryable {
			p.Log.Warn("job failed after retries; dead-lettered", slog.String("job_id", job.ID), slog.String("err", err.Error()))
			if derr := q.DeadLetter(context.WithoutCancel(ctx), job.Model, job.ID, err.Error()); derr != nil {
				p.Log.Warn("dead-letter failed", slog.String("err", derr.Error()))
			}
		}
	}
	if o.Status == sluice.JobSucceeded && p.Objects.ResultOver(len(o.Result)) {
		// The object is written before the job is recorded done, so a
		// recorded key never names a missing object. If the store is down
		// the job is not completed: it stays pending, is reclaimed after
		// worker.claim_idle and run again (dead-lettered after
		// jobs.max_attempts), and no usage is recorded for this run.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		key, perr := p.Objects.PutResult(pctx, job.UserID, job.ID, o.Result)
		pcancel()
		if perr != nil {
			p.Log.Error("result not stored; the job stays pending and will be retried",
				slog.String("job_id", job.ID), slog.Int("bytes", len(o.Result)), slog.String("err", perr.Error()))
			span.End(perr)
			return
		}
		o.Result, o.ResultRef = nil, key
	}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	r.countPromptSource(usage)
	// Usage is recorded for every job that reached an engine, exactly once.
	o.Usage = &sluice.UsageEvent{JobID: job.ID, UserID: job.UserID, KeyID: job.KeyID, Model: job.Model, Requested: job.Requested,
		Status: o.Status, Usage: usage, LatencyMS: latency.Milliseconds(), CreatedAt: job.CreatedAt, EndedAt: time.Now()}
	// Whole milliseconds, rounded up: a started millisecond is paid.
	o.EngineMS = (engineTime + time.Millisecond - 1).Milliseconds()
	o.Usage.EngineMS = o.EngineMS
	r.observeDone(o, usage, latency)
	span.End(err)
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if _, err := q.Complete(cctx, rkey.GroupWorkers, e, o); err != nil {
		p.Log.Error("complete failed; the job stays pending and will be reclaimed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		return
	}
	if o.ResultRef != "" {
		// The account may have been erased while the job ran: its objects
		// went then, and this result, written after, must go too.
		if erased, err := q.Erased(cctx, job.ID); err != nil {
			p.Log.Warn("erased flag unreadable", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		} else if erased {
			if err := p.Objects.Delete(cctx, o.ResultRef); err != nil {
				p.Log.Warn("erased job's result not deleted", slog.String("job_id", job.ID), slog.String("err", err.Error()))
			}
		}
	}
	if job.BodyRef != "" { // the job is final: its input is needed no more (the sweeper catches a failed delete)
		if err := p.Objects.Delete(cctx, job.BodyRef); err != nil {
			p.Log.Warn("job input not deleted", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		}
	}
}

// fetchInput loads an async job's input from the object store. If the
// store is down the job is left pending, to be reclaimed and tried again
// (an attempt is spent, so a store that stays down dead-letters it); an
// input that is gone fails the job at once, unbilled. It reports whether
// the job may run.
func (r *runner) fetchInput(ctx context.Context, c *redisq.Claimed, job *sluice.Job, release func()) bool {
	p := r.p
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := p.Objects.Fetch(fctx, job.BodyRef)
	if err == nil {
		job.Body = b
		return true
	}
	release()
	if sluice.AsError(err).Kind != sluice.KindNotFound {
		p.Log.Error("job input not fetched; the job stays pending and will be retried",
			slog.String("job_id", job.ID), slog.String("err", err.Error()))
		return false
	}
	o := redisq.Outcome{Status: sluice.JobFailed, HTTP: http.StatusInternalServerError,
		Error: &sluice.ErrorBody{Message: "The job's input is no longer stored.", Type: "server_error", Code: sluice.CodeInputMissing}}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if _, err := p.Queue.Complete(cctx, rkey.GroupWorkers, c.Entry, o); err != nil {
		p.Log.Error("complete failed; the job stays pending and will be reclaimed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
	}
	return false
}

// errTakenOut: the request was cut because its endpoint was taken out of
// rotation (its health polls failed) while it ran.
var errTakenOut = errors.New("endpoint taken out of rotation")

// call sends one upstream request, cut short if the endpoint is taken out
// meanwhile (errTakenOut).
func (r *runner) call(jctx context.Context, ep *endpoint, job sluice.Job, onChunk func([]byte) error) (*engine.Result, error) {
	rctx, rcancel := context.WithCancel(jctx)
	defer rcancel()
	alive := ep.aliveCtx()
	stop := context.AfterFunc(alive, rcancel)
	defer stop()
	res, err := r.callEngine(rctx, ep, job, onChunk)
	if err != nil && jctx.Err() == nil && alive.Err() != nil {
		return res, &engine.Error{Err: errTakenOut, Retryable: res == nil || res.Chunks == 0}
	}
	return res, err
}

// handBack returns a started job that never reached an engine to the queue
// at once (no attempt spent), for any worker to run.
func (r *runner) handBack(ctx context.Context, e redisq.Entry) {
	if err := r.p.Queue.Release(context.WithoutCancel(ctx), rkey.GroupWorkers, e); err != nil {
		r.p.Log.Warn("hand back failed; the job will be reclaimed", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
		return
	}
	r.p.Log.Info("job handed back", slog.String("job_id", e.JobID))
}
