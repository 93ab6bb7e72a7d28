package openai_test

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestJobErrorsOnTheWire pins the stored form and status of every job
// failure to the bytes clients saw when the worker and the queue encoded
// them themselves.
func TestJobErrorsOnTheWire(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err    *sluice.Error
		status int
		json   string
	}{
		{sluice.ErrJobCancelled, 499, `{"message":"The job was cancelled.","type":"invalid_request_error","param":null,"code":"cancelled"}`},
		{sluice.ErrJobExpired, 504, `{"message":"The job's deadline passed before it could run.","type":"server_error","param":null,"code":"deadline_exceeded"}`},
		{sluice.ErrJobDeadLettered, 500, `{"message":"The job failed too many times and was moved to the dead-letter queue.","type":"server_error","param":null,"code":"max_attempts_exceeded"}`},
		{sluice.ErrWorkerLost, 500, `{"message":"The worker serving this stream stopped after output was sent; the stream cannot be resumed.","type":"server_error","param":null,"code":"stream_interrupted"}`},
		{sluice.ErrWorkerShutdown, 503, `{"message":"The worker shut down while the job was running.","type":"server_error","param":null,"code":"stream_interrupted"}`},
		{sluice.ErrJobDeadline, 504, `{"message":"The job's deadline passed while it ran.","type":"server_error","param":null,"code":"deadline_exceeded"}`},
		{sluice.ErrStreamCut, 502, `{"message":"The inference engine failed after part of the output was streamed; the stream cannot be resumed.","type":"server_error","param":null,"code":"stream_interrupted"}`},
		{sluice.ErrEngineDown, 502, `{"message":"The inference engine failed while running the job; it is not retried.","type":"server_error","param":null,"code":"engine_error"}`},
		{sluice.ErrEngineUnreachable, 502, `{"message":"The inference engine could not be reached.","type":"server_error","param":null,"code":"service_unavailable"}`},
		{sluice.MaxAttemptsError(3), 502, `{"message":"The inference engine failed the job on each of its 3 attempts; it is not tried again.","type":"server_error","param":null,"code":"max_attempts_exceeded"}`},
		{sluice.ErrInputMissing, 500, `{"message":"The job's input is no longer stored.","type":"server_error","param":null,"code":"input_missing"}`},
		{openai.UpstreamError(429, []byte(`{"error":{"message":"busy"}}`)), 429, `{"message":"busy","type":"server_error","param":null,"code":"no_capacity"}`},
		{openai.UpstreamError(400, []byte(`{"error":{"message":"bad","param":"temperature"}}`)), 400, `{"message":"bad","type":"invalid_request_error","param":"temperature","code":null}`},
		{openai.UpstreamError(400, []byte(`{"error":{"message":"maximum context length is 8"}}`)), 400, `{"message":"maximum context length is 8","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}`},
		{openai.UpstreamError(500, []byte(`oops`)), 500, `{"message":"Internal Server Error","type":"server_error","param":null,"code":"service_unavailable"}`},
	} {
		if got := string(openai.EncodeError(c.err)); got != c.json {
			t.Errorf("%s: stored as\n %s\nwant\n %s", c.err.Code, got, c.json)
		}
		if got := openai.Status(c.err); got != c.status {
			t.Errorf("%s: status %d, want %d", c.err.Code, got, c.status)
		}
	}
}
