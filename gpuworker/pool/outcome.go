package pool

import (
	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// jobFailure is what decides how a job whose calls failed ends.
type jobFailure struct {
	cancelled   bool          // its owner cancelled it
	shutdown    bool          // the worker is shutting down and cut it short
	deadline    bool          // its deadline passed while it ran
	shown       bool          // output already reached the client
	ended       failure       // the attempt loop's verdict: failEngineDown, a spent failRequest or noFailure
	engine      *engine.Error // the last call's error, when it came from the engine client
	maxAttempts int           // jobs.max_attempts, for the message
}

// verdict is how a failed job ends.
type verdict struct {
	status sluice.JobStatus
	http   int           // for a synchronous caller
	err    *sluice.Error // stored on the job
	// release: hand the job back to the queue instead (a shutdown before any
	// output); if that fails it ends with status and err.
	release bool
	// deadLetter: it failed on a transient engine fault (the engine error is
	// Retryable) after its retries: an operator should look at it.
	deadLetter bool
}

// classifyJob decides how a job whose calls failed ends. It is pure: the
// first matching case wins, in the order a client would want it told.
func classifyJob(f jobFailure) verdict {
	v := verdict{status: sluice.JobFailed}
	switch {
	case f.cancelled:
		v.status, v.err = sluice.JobCancelled, sluice.ErrJobCancelled
	case f.shutdown:
		// Handed back unless its client already saw output.
		v.err, v.release = sluice.ErrWorkerShutdown, !f.shown
	case f.deadline:
		v.err = sluice.ErrJobDeadline
	case f.shown:
		// A retry would show the client text twice: it fails and pays for
		// what it produced.
		v.err = sluice.ErrStreamCut
	case f.ended == failEngineDown:
		// Not tried on another engine: a request that crashed this one
		// could crash every replica in turn.
		v.err = sluice.ErrEngineDown
	case f.ended == failRequest:
		v.err = sluice.MaxAttemptsError(f.maxAttempts)
	case f.engine != nil && f.engine.Body != nil:
		v.err = f.engine.Body // the engine's own answer
	default:
		v.err = sluice.ErrEngineUnreachable
	}
	v.http = openai.Status(v.err)
	v.deadLetter = v.status == sluice.JobFailed && f.engine != nil && f.engine.Retryable
	return v
}
