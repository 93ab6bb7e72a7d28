package pool

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// failure is how the worker treats one failed upstream call that showed no
// output.
type failure int

const (
	// failRefused: the connection was refused; the request never reached
	// the engine. The endpoint is taken out and the job runs elsewhere or
	// waits in Redis; no attempt is spent.
	failRefused failure = iota
	// failCapacity: the engine answered 429 or 503. It is busy, not broken:
	// tried again after a backoff (up to worker.retries), no attempt spent.
	failCapacity
	// failRequest: this request failed (a reset, an early EOF, a 502/504)
	// while its engine stays healthy. The endpoint stays in rotation and its
	// other requests run on; trying again spends an attempt, and after
	// jobs.max_attempts the job fails with max_attempts_exceeded.
	failRequest
	// failEngineDown: the engine went unhealthy with the request in flight.
	// It is not tried on another engine (a request that crashes vLLM would
	// crash every replica in turn): the job fails with engine_error and pays
	// its prompt.
	failEngineDown
	// failFinal: an answer no retry changes (a 400, a 500 the engine chose
	// to send): the job fails with it.
	failFinal

	// noFailure: the attempt loop ended for a reason no class names (a
	// success, output shown, the job's context ended, a final answer).
	noFailure failure = -1
)

// What the attempt loop does after a call fails with each class, stated per
// class rather than by the order of a switch.

// retried: the job may be tried again (elsewhere or after a backoff).
func (f failure) retried() bool { return f == failRefused || f == failCapacity || f == failRequest }

// failsOver: the endpoint is taken out of rotation and the job moves to
// another one, or back to Redis when there is none.
func (f failure) failsOver() bool { return f == failRefused }

// capped: tried at most worker.retries more times.
func (f failure) capped() bool { return f == failCapacity }

// spendsAttempt: trying again spends one of the job's jobs.max_attempts;
// when they are spent the job ends with this class.
func (f failure) spendsAttempt() bool { return f == failRequest }

// endsJob: the job ends with this class (engine_error), whatever the engine
// answered.
func (f failure) endsJob() bool { return f == failEngineDown }

// probeTimeout bounds the health probe that tells a request's own failure
// from its engine's.
const probeTimeout = 2 * time.Second

// classifyCall sorts a failed call. A refused connection is always a
// failover, even when a concurrent request's failure took the endpoint out
// first: the request never reached the engine, so it did not run there.
// A transport error that is not a refused
// connection is ambiguous: it is the request's own when the engine still
// answers its health route right after, its engine's when it does not.
func (r *runner) classifyCall(ctx context.Context, ep *endpoint, ee *engine.Error, takenOut bool) failure {
	switch {
	case ee.Dial: // refused: it never reached the engine, whatever took the endpoint out meanwhile
		return failRefused
	case takenOut:
		return failEngineDown
	case ee.Capacity():
		return failCapacity
	case ee.Status != 0 && ee.Retryable:
		return failRequest
	case ee.Status != 0:
		return failFinal
	case !ee.Retryable:
		return failFinal
	}
	if !ep.client.Healthy(ctx, probeTimeout) {
		return failEngineDown
	}
	return failRequest
}

// attempted is what a job's calls to the engine came to.
type attempted struct {
	bulk       bool // a batch-class job: its slot counts in ep.bulk
	res        *engine.Result
	err        error
	ep         *endpoint     // the endpoint it ended on, whose slot it still holds
	engineTime time.Duration // time in engine calls: what the GPU-second price charges
	shown      bool          // the last call relayed output: a retry would show text twice
	ended      failure       // failEngineDown or a spent failRequest; else noFailure
	// handBack: nothing reached an engine and no endpoint is left (or the
	// worker is draining); the slot is freed and the job goes back to Redis.
	handBack bool
}

// attempt runs a job's calls to the engine: retries and failover by the
// class of each failure (see failure), until a call succeeds, shows output,
// fails for good or the job's context ends.
func (r *runner) attempt(ctx, jctx context.Context, job sluice.Job, ep *endpoint, onChunk func([]byte) error) attempted {
	p, q := r.p, r.p.Queue
	a := attempted{ep: ep, ended: noFailure, bulk: isBulk(job)}
	backoff := p.Config.Worker.RetryBackoff
	for try := 0; ; try++ {
		callStart := time.Now()
		a.res, a.err = r.call(jctx, a.ep, job, onChunk)
		a.engineTime += time.Since(callStart)
		a.shown = a.res != nil && a.res.Chunks > 0
		var ee *engine.Error
		if a.err == nil || !errors.As(a.err, &ee) || jctx.Err() != nil || a.shown {
			return a
		}
		f := r.classifyCall(jctx, a.ep, ee, errors.Is(a.err, errTakenOut))
		if f.endsJob() {
			a.ended = f
		}
		if !f.retried() {
			return a
		}
		if f.failsOver() {
			if r.failOver(&a); a.handBack {
				return a
			}
			continue
		}
		if f.capped() && try >= p.Config.Worker.Retries {
			return a
		}
		if f.spendsAttempt() {
			// The request's own failure: trying again spends an attempt.
			n, serr := q.SpendAttempt(context.WithoutCancel(ctx), job.ID, p.Name)
			if serr != nil {
				return a // reclaimed or final elsewhere: it fails here with this error
			}
			if n > q.MaxAttempts() {
				a.ended = f
				return a
			}
		}
		p.Telemetry.EngineRetry(job.Model)
		if next := r.pick(a.ep); next != nil {
			a.ep = a.ep.moveTo(next, a.bulk)
		} else {
			sleep(jctx, backoff)
			backoff *= 2
		}
	}
}

// failOver takes a refused endpoint out of rotation: nothing reached the
// engine, so the job moves to another endpoint, or, when none is left or
// the worker is draining, frees its slot to go back to Redis (handBack; no
// attempt spent).
func (r *runner) failOver(a *attempted) {
	p := r.p
	if a.ep.takeOut() {
		p.Telemetry.EndpointTakenOut(r.model.Name, a.ep.client.Base, "refused")
		p.Log.Warn("endpoint taken out of rotation", slog.String("model", r.model.Name),
			slog.String("endpoint", a.ep.client.Base), slog.String("err", a.err.Error()))
	}
	next := r.pick(a.ep)
	if next == nil || r.soft.Err() != nil {
		a.ep.put(a.bulk)
		a.handBack = true
		return
	}
	a.ep = a.ep.moveTo(next, a.bulk)
}
