package pool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// ResponseStore keeps stored responses; postgres.DB implements it.
type ResponseStore interface {
	PutResponse(ctx context.Context, r sluice.StoredResponse) error
}

// errResponseNotStored ends the span of a job left pending because its
// response could not be stored.
var errResponseNotStored = errors.New("response not stored")

// respState is a /v1/responses job's response as the worker relays it: the
// engine's response object renamed to Sluice's id, with Sluice's own fields
// (store, previous_response_id, metadata) echoed, which the engine never
// saw; and for a stream, the final object, which is what is stored.
type respState struct {
	job *sluice.ResponseJob

	mu    sync.Mutex
	final []byte // the response object of the stream's last response.* event
}

// newRespState is nil for a job of any other endpoint; its methods then
// change nothing.
func newRespState(job sluice.Job) *respState {
	if job.Endpoint != sluice.EndpointResponses || job.Response == nil {
		return nil
	}
	return &respState{job: job.Response}
}

// wrap patches each streamed event on its way to the client.
func (rs *respState) wrap(onChunk func([]byte) error) func([]byte) error {
	if rs == nil || onChunk == nil {
		return onChunk
	}
	return func(b []byte) error { return onChunk(rs.patchEvent(b)) }
}

// patchEvent patches the response object an event carries (response.created,
// in_progress, completed, incomplete, failed) and keeps the latest.
func (rs *respState) patchEvent(data []byte) []byte {
	if !bytes.Contains(data, []byte(`"response":{`)) {
		return data // a delta or item event: no response object, no parse
	}
	var ev map[string]json.RawMessage
	if json.Unmarshal(data, &ev) != nil || len(ev["response"]) == 0 {
		return data
	}
	obj := rs.patchObject(ev["response"])
	ev["response"] = obj
	out, err := json.Marshal(ev)
	if err != nil {
		return data
	}
	rs.mu.Lock()
	rs.final = obj
	rs.mu.Unlock()
	return out
}

// patchObject sets Sluice's id and fields on a response object.
func (rs *respState) patchObject(obj []byte) []byte {
	if rs == nil {
		return obj
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return obj
	}
	j := rs.job
	m["id"], _ = json.Marshal(j.ID)
	m["store"], _ = json.Marshal(j.Store)
	m["previous_response_id"] = json.RawMessage("null")
	if j.PreviousID != "" {
		m["previous_response_id"], _ = json.Marshal(j.PreviousID)
	}
	m["metadata"] = json.RawMessage("{}")
	if len(j.Metadata) > 0 {
		m["metadata"] = j.Metadata
	}
	out, err := json.Marshal(m)
	if err != nil {
		return obj
	}
	return out
}

// storeResponse keeps a succeeded job's response when the client asked to
// store it (store: true, the default). The worker stores it, before the
// job is recorded done, so a succeeded job's response is never lost: if the
// database is down the non-streamed job is left pending (reclaimed after
// worker.claim_idle and run again); the row is keyed by the response id,
// so a job run twice is stored once. A streamed job's client has already
// read its answer, so a rerun would show it twice: after retrying for up
// to storeRetry it is completed unstored, and logged. It reports whether
// the job may be completed.
func (r *runner) storeResponse(ctx context.Context, job sluice.Job, rs *respState, result []byte) bool {
	if rs == nil || !rs.job.Store || r.p.Responses == nil {
		return true
	}
	obj := result
	if job.Stream {
		rs.mu.Lock()
		obj = rs.final
		rs.mu.Unlock()
	}
	if len(obj) == 0 {
		r.p.Log.WarnContext(ctx, "response not stored: the engine sent no response object", slog.String("job_id", job.ID))
		return true
	}
	if job.Stream && r.p.redact != nil {
		// The final object was kept as the engine sent it, before the
		// stream's filter: what is stored is what the client was shown.
		obj = r.p.redact.Body(obj)
	}
	sr := sluice.StoredResponse{ID: rs.job.ID, UserID: job.UserID, Model: job.Model, Input: inputItems(job.Body),
		Response: obj, ExpiresAt: time.Now().Add(rs.job.TTL)}
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = r.p.Responses.PutResponse(sctx, sr)
		cancel()
		if err == nil || sluice.KindOf(err) == sluice.KindInvalid {
			break
		}
		sleep(ctx, time.Duration(attempt+1)*500*time.Millisecond)
	}
	if err == nil {
		return true
	}
	if job.Stream || sluice.KindOf(err) == sluice.KindInvalid {
		r.p.Log.ErrorContext(ctx, "response not stored", slog.String("job_id", job.ID), slog.String("response_id", sr.ID),
			slog.String("err", err.Error()))
		return true
	}
	r.p.Log.ErrorContext(ctx, "response not stored; the job stays pending and will be retried", slog.String("job_id", job.ID),
		slog.String("err", err.Error()))
	return false
}

// inputItems is a job body's input as a JSON array of items: a string
// input is the user message it stands for.
func inputItems(body []byte) json.RawMessage {
	var b struct {
		Input json.RawMessage `json:"input"`
	}
	json.Unmarshal(body, &b) //nolint:errcheck // no input: an empty list
	var s string
	if json.Unmarshal(b.Input, &s) == nil {
		out, _ := json.Marshal([]map[string]string{{"type": "message", "role": "user", "content": s}})
		return out
	}
	if len(b.Input) == 0 || b.Input[0] != '[' {
		return json.RawMessage("[]")
	}
	return b.Input
}
