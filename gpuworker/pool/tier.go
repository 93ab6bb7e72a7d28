package pool

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// engineBody is the body a job's engine gets: its upstream body, with
// vLLM's `priority` (lower runs sooner) set to the job's queue class when
// the model's engines run --scheduling-policy priority. Never otherwise:
// an fcfs engine refuses a request that carries it. The client cannot set
// it (it is on no route's allowlist), so the body has no priority of its
// own to clash with.
//
// A vLLM engine also gets the job's cache_salt (its account's, unless the
// operator shares the cache: shared/prefixcache), in place of any the
// client sent; other engines know no such field.
func (r *runner) engineBody(job sluice.Job) []byte {
	body := job.Body
	if job.CacheSalt != "" && r.model.Engine == engine.KindVLLM {
		body = withCacheSalt(body, job.CacheSalt)
	}
	if r.model.SchedulingPolicy != config.SchedulingPriority {
		return body
	}
	return withPriority(body, job.Priority)
}

// withCacheSalt sets "cache_salt" in a JSON object body: put first when
// the body has none (no re-encoding of a large body), replaced otherwise
// (the engine's JSON reader keeps the last of duplicate keys, so a first
// one would not win).
func withCacheSalt(body []byte, salt string) []byte {
	b := bytes.TrimSpace(body)
	if len(b) < 2 || b[0] != '{' {
		return body
	}
	v, _ := json.Marshal(salt)
	if bytes.Contains(b, []byte(`"cache_salt"`)) {
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			return body
		}
		m["cache_salt"] = v
		out, err := json.Marshal(m)
		if err != nil {
			return body
		}
		return out
	}
	out := make([]byte, 0, len(b)+len(v)+16)
	out = append(out, `{"cache_salt":`...)
	out = append(out, v...)
	if rest := bytes.TrimSpace(b[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, b[1:]...)
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
