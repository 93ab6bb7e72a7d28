package pool

import (
	"context"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
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
)

// probeTimeout bounds the health probe that tells a request's own failure
// from its engine's.
const probeTimeout = 2 * time.Second

// classify sorts a failed call. A transport error that is not a refused
// connection is ambiguous: it is the request's own when the engine still
// answers its health route right after, its engine's when it does not.
func (r *runner) classify(ctx context.Context, ep *endpoint, ee *engine.Error, takenOut bool) failure {
	switch {
	case takenOut:
		return failEngineDown
	case ee.Dial:
		return failRefused
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
