package pool

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// runner serves one model: it claims as many jobs as its endpoints have
// free batch slots, highest priority first.
type runner struct {
	p       *Pool
	soft    context.Context // ends when the worker starts draining
	model   config.Model
	streams []string // every shard's, by priority, 0 first
	eps     []*endpoint
	wake    chan struct{}
	rounds  uint64 // claim rounds, for readOrder's anti-starvation turn

	// For a LoRA adapter's runner (adapters.go): the parent model's runner,
	// whose endpoints it shares, and the adapter; nil for a model's.
	parent   *runner
	adapter  config.Adapter
	family   []*runner // the parent and its adapters: woken together
	lastLoad time.Time // last run-time load tried
	verified bool      // the adapter's artifact verified in this process
}

func newRunner(p *Pool, m config.Model) *runner {
	r := &runner{p: p, model: m, wake: make(chan struct{}, 1)}
	r.streams = p.Queue.Streams(m.Name, config.Priorities)
	for _, u := range m.Endpoints {
		e := newEndpoint(m, p.Config.Dispatch, u)
		e.bulkMax = int64(p.Config.Batch.MaxSlotShare * float64(m.MaxBatchSize))
		r.eps = append(r.eps, e)
	}
	return r
}

// signal wakes the claim loop; a slot freed on a shared endpoint may serve
// any of the family, so all of it is woken.
func (r *runner) signal() {
	family := r.family
	if family == nil {
		family = []*runner{r}
	}
	for _, f := range family {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (r *runner) free() int64 {
	var n int64
	for _, e := range r.eps {
		if r.usable(e) {
			n += e.free()
		}
	}
	return n
}

// pick returns the healthy endpoint with the most free slots, or nil.
func (r *runner) pick(exclude *endpoint) *endpoint {
	var best *endpoint
	var bestFree int64
	for _, e := range r.eps {
		if e == exclude || !r.usable(e) {
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
	// idle holds the bells of a claim that drained the queue: the next
	// claim would find nothing until an enqueue rings one, so the loop
	// sleeps on them first (a job enqueued after that claim rings past
	// them: WaitWork returns at once).
	var idle *redisq.Bells
	for ctx.Err() == nil {
		free := r.free()
		if free <= 0 {
			idle = nil
			r.maybeLoad(ctx)
			select {
			case <-r.wake:
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if idle != nil {
			_, err := q.WaitWork(ctx, r.model.Name, *idle, time.Second)
			idle = nil
			if err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "claim failed", slog.String("model", r.model.Name), slog.String("err", err.Error()))
				sleep(ctx, time.Second)
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
					log.InfoContext(ctx, "reclaimed jobs of a dead worker", slog.String("model", r.model.Name), slog.Int("jobs", len(es)))
					r.p.Telemetry.JobsReclaimed(r.model.Name, len(es))
					// There may be more: look again as soon as slots free up.
					lastClaim = time.Time{}
				}
				entries = append(entries, es...)
			}
		}
		if err == nil && int64(len(entries)) < free {
			var es []redisq.Entry
			var bell redisq.Bells
			o := r.claimOrder()
			o.Place = r.placement()
			es, bell, err = q.ClaimShare(ctx, rkey.GroupWorkers, r.p.Name, r.model.Name, config.Priorities, free-int64(len(entries)),
				o, r.bulkRoom())
			entries = append(entries, es...)
			switch {
			case err != nil:
			case len(entries) == 0:
				// Nothing claimable: sleep until an enqueue rings a shard's
				// bell. With placement, what is queued may be another
				// worker's until it has waited spill_after (the claim says
				// so: Held): look again then.
				wait := time.Second
				if bell.Held {
					wait = min(wait, max(r.p.Config.Inference.PrefixCache.SpillAfter, 10*time.Millisecond))
				}
				_, err = q.WaitWork(ctx, r.model.Name, bell, wait)
			case bell.Drained:
				// It took all there was: launch, then sleep on the bell
				// without an empty claim first.
				idle = &bell
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "claim failed", slog.String("model", r.model.Name), slog.String("err", err.Error()))
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
				r.p.Log.WarnContext(ctx, "start failed; the job stays pending and will be reclaimed",
					slog.String("job_id", es[i].JobID), slog.String("err", res.Err.Error()))
			}
			continue
		}
		r.observeStart(res)
		if res.Outcome == redisq.StartInterrupted && res.Claimed != nil {
			jobs.Add(1)
			go func(c *redisq.Claimed) {
				defer jobs.Done()
				r.endInterrupted(ctx, c)
			}(res.Claimed)
			continue
		}
		if res.Outcome != redisq.StartRun {
			continue
		}
		bulk := isBulk(res.Claimed.Job)
		ep := r.placed(res.Claimed.Entry.Endpoint)
		if ep != nil && bulk && ep.bulkFree() <= 0 && r.bulkRoom() > 0 {
			ep = nil // batch work keeps to its share of each endpoint (share.go)
		}
		if ep == nil {
			ep = r.pickFor(bulk)
		}
		if ep == nil {
			// Only after a restart with no endpoint in rotation: the job waits in Redis, not here.
			r.handBack(ctx, res.Claimed.Entry)
			continue
		}
		ep.take(bulk)
		jobs.Add(1)
		go func(c *redisq.Claimed) {
			defer jobs.Done()
			defer r.signal()
			r.run(ctx, c, ep)
		}(res.Claimed)
	}
}

// run executes one started job and completes it: its calls to the engine
// (attempt), how a failure ends it (classifyJob), then finish.
func (r *runner) run(ctx context.Context, c *redisq.Claimed, ep *endpoint) {
	job := c.Job
	jctx, cancel := context.WithDeadline(ctx, job.Deadline)
	defer cancel()
	t := &task{cancel: cancel, entry: c.Entry}
	defer r.p.track(job.ID, t)()
	if job.BodyRef != "" && !r.fetchInput(ctx, c, &job, func() { ep.put(isBulk(job)) }) {
		return
	}

	jctx, span := r.traceJob(jctx, c)
	started := time.Now()
	chunks, onChunk := r.output(ctx, job)
	rs := newRespState(job) // nil unless a /v1/responses job
	onChunk = rs.wrap(onChunk)
	a := r.attempt(ctx, jctx, job, ep, onChunk)
	if a.handBack {
		if chunks != nil {
			chunks.close() //nolint:errcheck // nothing was shown
		}
		r.handBack(ctx, c.Entry)
		return
	}
	a.ep.put(isBulk(job))
	d := done{latency: time.Since(started), engineTime: a.engineTime, err: a.err}
	if chunks != nil {
		// Every chunk is in the result stream before the end event.
		if shown, cerr := chunks.close(); cerr != nil && d.err == nil {
			d.err = cerr
		} else if shown {
			a.shown = true
		}
	}
	d.o = redisq.Outcome{Status: sluice.JobSucceeded, HTTP: http.StatusOK}
	if a.res != nil {
		d.usage = a.res.Usage
		if !job.Stream {
			a.res.Body = openai.EchoServiceTier(rs.patchObject(a.res.Body), job.ServiceTier)
			d.o.Result = a.res.Body
			if r.p.redact != nil {
				d.o.Result = r.p.redact.Body(d.o.Result)
			}
		}
	}
	if d.err != nil {
		f := jobFailure{cancelled: t.cancelled.Load(), shown: a.shown, ended: a.ended, maxAttempts: r.p.Queue.MaxAttempts()}
		errors.As(d.err, &f.engine)
		if jerr := jctx.Err(); errors.Is(jerr, context.DeadlineExceeded) {
			f.deadline = true
		} else {
			f.shutdown = ctx.Err() != nil && jerr != nil
		}
		if !r.fail(ctx, c.Entry, job, classifyJob(f), a.res, &d) {
			return
		}
	}
	if d.o.Status == sluice.JobSucceeded && !r.storeResponse(ctx, job, rs, d.o.Result) {
		span.End(errResponseNotStored)
		return // left pending: reclaimed and run again, stored then
	}
	r.finish(ctx, c.Entry, job, d, span)
}

// track lists a running job (for cancels and the heartbeat) until the
// returned func is called.
func (p *Pool) track(jobID string, t *task) (untrack func()) {
	p.mu.Lock()
	p.running[jobID] = t
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		delete(p.running, jobID)
		p.mu.Unlock()
	}
}

// output is where a streamed job's chunks go (redacted when configured):
// nil for a job that is not streamed.
func (r *runner) output(ctx context.Context, job sluice.Job) (*chunkWriter, func([]byte) error) {
	if !job.Stream {
		return nil, nil
	}
	chunks := newChunkWriter(ctx, r.p.Queue, job.ID)
	// Each chunk names the service tier that served it, as OpenAI's do.
	add := func(b []byte) error { return chunks.add(openai.EchoServiceTier(b, job.ServiceTier)) }
	if r.p.redact == nil {
		return chunks, add
	}
	fs := r.p.redact.Stream()
	return chunks, func(b []byte) error {
		for _, e := range fs.Events(b) {
			if err := add(e); err != nil {
				return err
			}
		}
		return nil
	}
}

// fail applies a failed job's verdict: it hands the job back, or records
// the error and what the job pays in d and dead-letters it when asked. It
// reports whether the job is to be finished here.
func (r *runner) fail(ctx context.Context, e redisq.Entry, job sluice.Job, v verdict, res *engine.Result, d *done) bool {
	p, q := r.p, r.p.Queue
	if v.release {
		// Shutdown abort with nothing shown: the job goes back to the queue.
		if rerr := q.Release(context.WithoutCancel(ctx), rkey.GroupWorkers, e); rerr == nil {
			return false
		}
	}
	d.o.Status, d.o.HTTP, d.o.Error = v.status, v.http, v.err
	d.usage = r.billFailed(ctx, job, res, d.err, v.status == sluice.JobCancelled)
	if v.deadLetter {
		p.Log.WarnContext(ctx, "job failed after retries; dead-lettered", slog.String("job_id", job.ID), slog.String("err", d.err.Error()))
		if derr := q.DeadLetter(context.WithoutCancel(ctx), job.Model, job.ID, d.err.Error()); derr != nil {
			p.Log.WarnContext(ctx, "dead-letter failed", slog.String("err", derr.Error()))
		}
	}
	return true
}

// done is how a job ended, for finish to record.
type done struct {
	o          redisq.Outcome
	usage      sluice.Usage
	latency    time.Duration // from the first call to the last one's end
	engineTime time.Duration // time in engine calls: what the GPU-second price charges
	err        error         // the job's failure, for its span
}

// finish records a job's end: a result too large for Redis goes to the
// object store first, then usage, the outcome and the ack in one step
// (Complete); a finished job's input is deleted.
func (r *runner) finish(ctx context.Context, e redisq.Entry, job sluice.Job, d done, span telemetry.Span) {
	p, q, o := r.p, r.p.Queue, d.o
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
			p.Log.ErrorContext(ctx, "result not stored; the job stays pending and will be retried",
				slog.String("job_id", job.ID), slog.Int("bytes", len(o.Result)), slog.String("err", perr.Error()))
			span.End(perr)
			return
		}
		o.Result, o.ResultRef = nil, key
	}
	usage := d.usage
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	r.countPromptSource(usage)
	// Usage is recorded for every job that reached an engine, exactly once.
	o.Usage = &sluice.UsageEvent{JobID: job.ID, UserID: job.UserID, KeyID: job.KeyID, Model: job.Model, Requested: job.Requested,
		Status: o.Status, Usage: usage, LatencyMS: d.latency.Milliseconds(), CreatedAt: job.CreatedAt, EndedAt: time.Now()}
	if job.ServiceTier != sluice.TierDefault { // the usage row names a tier other than the default
		o.Usage.ServiceTier = job.ServiceTier
	}
	// Whole milliseconds, rounded up: a started millisecond is paid.
	o.EngineMS = (d.engineTime + time.Millisecond - 1).Milliseconds()
	o.Usage.EngineMS = o.EngineMS
	r.observeDone(o, usage, d.latency)
	span.End(d.err)
	if !job.Async && job.WebhookURL == "" && !p.Config.Admission.Disabled {
		// A synchronous job's concurrency lease goes with its completion,
		// so its caller can answer before releasing it (admission's lease,
		// keyed by user; an async job's ends at its settlement).
		o.Lease = rkey.User(job.UserID).Lease
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if _, err := q.Complete(cctx, rkey.GroupWorkers, e, o); err != nil {
		p.Log.ErrorContext(ctx, "complete failed; the job stays pending and will be reclaimed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		return
	}
	if o.ResultRef != "" {
		// The account may have been erased while the job ran: its objects
		// went then, and this result, written after, must go too.
		if erased, err := q.Erased(cctx, job.ID); err != nil {
			p.Log.WarnContext(ctx, "erased flag unreadable", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		} else if erased {
			if err := p.Objects.Delete(cctx, o.ResultRef); err != nil {
				p.Log.WarnContext(ctx, "erased job's result not deleted", slog.String("job_id", job.ID), slog.String("err", err.Error()))
			}
		}
	}
	if job.BodyRef != "" { // the job is final: its input is needed no more (the sweeper catches a failed delete)
		if err := p.Objects.Delete(cctx, job.BodyRef); err != nil {
			p.Log.WarnContext(ctx, "job input not deleted", slog.String("job_id", job.ID), slog.String("err", err.Error()))
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
		p.Log.ErrorContext(ctx, "job input not fetched; the job stays pending and will be retried",
			slog.String("job_id", job.ID), slog.String("err", err.Error()))
		return false
	}
	o := redisq.Outcome{Status: sluice.JobFailed, HTTP: openai.Status(sluice.ErrInputMissing), Error: sluice.ErrInputMissing}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if _, err := p.Queue.Complete(cctx, rkey.GroupWorkers, c.Entry, o); err != nil {
		p.Log.ErrorContext(ctx, "complete failed; the job stays pending and will be reclaimed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
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
		r.p.Log.WarnContext(ctx, "hand back failed; the job will be reclaimed", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
		return
	}
	r.p.Log.InfoContext(ctx, "job handed back", slog.String("job_id", e.JobID))
}

// placement is the runner's side of a prefix-aware claim (redisq
// ClaimOrder.Place): its endpoints in rotation and their free slots; nil
// with placement off (inference.prefix_cache.placement).
func (r *runner) placement() *redisq.Placement {
	pc := r.p.Config.Inference.PrefixCache
	if !pc.PlacementOn() {
		return nil
	}
	p := &redisq.Placement{SpillAfter: pc.SpillAfter, TTL: pc.AffinityTTL, MaxEntries: pc.MaxEntries, Window: pc.ScanWindow}
	for _, e := range r.eps { // full ones too: the others learn that they are full
		free := e.free()
		if !r.usable(e) { // an adapter's runner: an engine without the adapter takes none of its jobs
			free = 0
		}
		p.Endpoints = append(p.Endpoints, redisq.EndpointSlots{ID: e.id, Free: free})
	}
	return p
}

// placed is the endpoint a prefix-aware claim chose, if it is this
// runner's and still has a free slot; nil leaves the choice to pickFor.
func (r *runner) placed(id string) *endpoint {
	if id == "" {
		return nil
	}
	for _, e := range r.eps {
		if e.id == id && e.free() > 0 && r.usable(e) {
			return e
		}
	}
	return nil
}
