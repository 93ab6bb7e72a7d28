package pool

import (
	"bytes"
	"strconv"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// engineBody is the body a job's engine gets: its upstream body, with
// vLLM's `priority` (lower runs sooner) set to the job's queue class when
// the model's engines run --scheduling-policy priority. Never otherwise:
// an fcfs engine refuses a request that carries it. The client cannot set
// it (it is on no route's allowlist), so the body has no priority of its
// own to clash with.
func (r *runner) engineBody(job sluice.Job) []byte {
	if r.model.SchedulingPolicy != config.SchedulingPriority {
		return job.Body
	}
	return withPriority(job.Body, job.Priority)
}

// withPriority puts "priority":p first in a JSON object body.
func withPriority(body []byte, p int) []byte {
	b := bytes.TrimSpace(body)
	if len(b) < 2 || b[0] != '{' {
		return body
	}
	out := make([]byte, 0, len(b)+16)
	out = append(out, `{"priority":`...)
	out = strconv.AppendInt(out, int64(p), 10)
	if rest := bytes.TrimSpace(b[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, b[1:]...)
}
