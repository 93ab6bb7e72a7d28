package pool

import (
	"testing"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func TestClassifyJob(t *testing.T) {
	t.Parallel()
	transport := &engine.Error{Retryable: true} // a reset, an early EOF, a refused dial
	final := &engine.Error{Status: 400, Body: openai.UpstreamError(400, []byte(`{"error":{"message":"bad"}}`))}
	busy := &engine.Error{Status: 429, Retryable: true, Body: openai.UpstreamError(429, nil)}
	cut := &engine.Error{} // a stream cut after output: not retryable
	for _, c := range []struct {
		name string
		in   jobFailure
		// want
		status     sluice.JobStatus
		http       int
		code       string
		release    bool
		deadLetter bool
	}{
		{"cancelled wins over everything", jobFailure{cancelled: true, shutdown: true, deadline: true, shown: true, engine: transport},
			sluice.JobCancelled, 499, sluice.CodeCancelled, false, false},
		{"shutdown before output: handed back", jobFailure{shutdown: true, engine: transport},
			sluice.JobFailed, 503, sluice.CodeStreamInterrupted, true, true},
		{"shutdown after output: fails", jobFailure{shutdown: true, shown: true, engine: cut},
			sluice.JobFailed, 503, sluice.CodeStreamInterrupted, false, false},
		{"deadline", jobFailure{deadline: true, engine: transport},
			sluice.JobFailed, 504, sluice.CodeDeadlineExceeded, false, true},
		{"deadline, no engine error", jobFailure{deadline: true},
			sluice.JobFailed, 504, sluice.CodeDeadlineExceeded, false, false},
		{"output shown, then the engine failed", jobFailure{shown: true, engine: cut},
			sluice.JobFailed, 502, sluice.CodeStreamInterrupted, false, false},
		{"engine went down with the job", jobFailure{ended: failEngineDown, engine: transport},
			sluice.JobFailed, 502, sluice.CodeEngineError, false, true},
		{"attempts spent", jobFailure{ended: failRequest, engine: transport, maxAttempts: 3},
			sluice.JobFailed, 502, sluice.CodeMaxAttempts, false, true},
		{"the engine's own final answer", jobFailure{ended: noFailure, engine: final},
			sluice.JobFailed, 400, "", false, false},
		{"engine busy after retries", jobFailure{ended: noFailure, engine: busy},
			sluice.JobFailed, 429, sluice.CodeNoCapacity, false, true},
		{"engine unreachable", jobFailure{ended: noFailure, engine: transport},
			sluice.JobFailed, 502, sluice.CodeServiceUnavailable, false, true},
		{"not an engine error (the result stream failed)", jobFailure{ended: noFailure},
			sluice.JobFailed, 502, sluice.CodeServiceUnavailable, false, false},
	} {
		v := classifyJob(c.in)
		if v.status != c.status || v.http != c.http || v.err == nil || v.err.Code != c.code || v.release != c.release || v.deadLetter != c.deadLetter {
			t.Errorf("%s: got status %s http %d code %q release %v dead-letter %v; want %s %d %q %v %v", c.name,
				v.status, v.http, v.err.Code, v.release, v.deadLetter, c.status, c.http, c.code, c.release, c.deadLetter)
		}
	}
	if v := classifyJob(jobFailure{ended: failRequest, engine: transport, maxAttempts: 5}); v.err.Message !=
		"The inference engine failed the job on each of its 5 attempts; it is not tried again." {
		t.Errorf("attempts message: %q", v.err.Message)
	}
}

// TestFailurePolicy pins what the attempt loop does with each class.
func TestFailurePolicy(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		f                                                  failure
		retried, failsOver, capped, spendsAttempt, endsJob bool
	}{
		{failRefused, true, true, false, false, false},
		{failCapacity, true, false, true, false, false},
		{failRequest, true, false, false, true, false},
		{failEngineDown, false, false, false, false, true},
		{failFinal, false, false, false, false, false},
	} {
		if c.f.retried() != c.retried || c.f.failsOver() != c.failsOver || c.f.capped() != c.capped ||
			c.f.spendsAttempt() != c.spendsAttempt || c.f.endsJob() != c.endsJob {
			t.Errorf("class %d: policy differs", c.f)
		}
	}
}
