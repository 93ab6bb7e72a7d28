package sluice

import "fmt"

// How a job that did not succeed ended: the error stored on it, shown to its
// client by GET /v1/jobs/{id}, on the synchronous answer and in webhooks.
// shared/openai alone turns them into the OpenAI error object.
var (
	// ErrJobCancelled: the client (or a clawback) cancelled the job.
	ErrJobCancelled = &Error{Kind: KindCancelled, Code: CodeCancelled, Message: "The job was cancelled."}
	// ErrJobExpired: the deadline passed while the job was queued.
	ErrJobExpired = &Error{Kind: KindTimeout, Code: CodeDeadlineExceeded,
		Message: "The job's deadline passed before it could run."}
	// ErrJobDeadLettered: the job was claimed jobs.max_attempts times
	// without finishing (its workers died) and went to the dead-letter queue.
	ErrJobDeadLettered = &Error{Kind: KindInternal, Code: CodeMaxAttempts,
		Message: "The job failed too many times and was moved to the dead-letter queue."}
	// ErrWorkerLost: the worker streaming the job died after output was
	// shown; the job is not run again, which would show it twice.
	ErrWorkerLost = &Error{Kind: KindInternal, Code: CodeStreamInterrupted,
		Message: "The worker serving this stream stopped after output was sent; the stream cannot be resumed."}
	// ErrWorkerShutdown: the worker shut down with the job running after
	// output was shown (or the job could not be handed back).
	ErrWorkerShutdown = &Error{Kind: KindUnavailable, Code: CodeStreamInterrupted,
		Message: "The worker shut down while the job was running."}
	// ErrJobDeadline: the job's deadline passed while it ran.
	ErrJobDeadline = &Error{Kind: KindTimeout, Code: CodeDeadlineExceeded,
		Message: "The job's deadline passed while it ran."}
	// ErrStreamCut: the engine failed after part of the output was shown.
	ErrStreamCut = &Error{Kind: KindEngine, Code: CodeStreamInterrupted,
		Message: "The inference engine failed after part of the output was streamed; the stream cannot be resumed."}
	// ErrEngineDown: the engine went unhealthy with the job in flight.
	ErrEngineDown = &Error{Kind: KindEngine, Code: CodeEngineError,
		Message: "The inference engine failed while running the job; it is not retried."}
	// ErrEngineUnreachable: no engine answered the job.
	ErrEngineUnreachable = &Error{Kind: KindEngine, Code: CodeServiceUnavailable,
		Message: "The inference engine could not be reached."}
	// ErrInputMissing: an async job's stored input is gone.
	ErrInputMissing = &Error{Kind: KindInternal, Code: CodeInputMissing, Message: "The job's input is no longer stored."}
)

// MaxAttemptsError: the engine failed the job on each of its n attempts.
func MaxAttemptsError(n int) *Error {
	return &Error{Kind: KindEngine, Code: CodeMaxAttempts,
		Message: fmt.Sprintf("The inference engine failed the job on each of its %d attempts; it is not tried again.", n)}
}
