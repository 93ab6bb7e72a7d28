package submit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
	"github.com/sluice-ai/sluice/shared/webhook"
)

type jobRequest struct {
	URL        *string         `json:"url"`
	Body       json.RawMessage `json:"body"`
	WebhookURL *string         `json:"webhook_url"`
}

// createJob accepts an async job: POST /v1/jobs {"url","body","webhook_url"}.
// It parses the job (parseJob), answers a retried Idempotency-Key with the
// job the first request created (replay), then reserves, stores the input
// and enqueues it (enqueueJob).
func (s *service) createJob(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	req, job, err := s.parseJob(r, p)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	httpserve.SetInference(r.Context(), job.Model, false, false)
	job.Trace = telemetry.From(r.Context()).Inject(r.Context())
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 255 {
		openai.WriteError(w, r, s.Log, sluice.Invalid("Idempotency-Key", sluice.CodeInvalidValue, "Idempotency-Key is longer than 255 characters."))
		return
	}
	if idem != "" && s.replay(w, r, p, idem, job.ID) {
		return
	}
	if err := s.enqueueJob(w, r, p, req, job); err != nil {
		if idem != "" {
			s.Queue.Forget(r.Context(), p.UserID, idem)
		}
		openai.WriteError(w, r, s.Log, err)
		return
	}
	if idem != "" {
		if err := s.Queue.Confirm(r.Context(), p.UserID, idem); err != nil {
			s.Log.WarnContext(r.Context(), "idempotency mapping not confirmed; it lapses in 30s", slog.String("err", err.Error()))
		}
	}
	w.Header().Set("Sluice-Job-Id", job.ID)
	openai.WriteJSON(w, http.StatusAccepted, sluice.JobState{ID: job.ID, Object: "job", Status: sluice.JobQueued,
		Model: job.Model, URL: job.Endpoint, CreatedAt: job.CreatedAt.Unix()})
}

// parseJob reads and validates an async job: its envelope, the inference
// request in its body (errors name body.<field>) and its webhook URL.
func (s *service) parseJob(r *http.Request, p *sluice.Principal) (*openai.Request, *sluice.Job, error) {
	raw, err := openai.ReadBody(r, s.Config.Server.MaxBodyBytes)
	if err != nil {
		return nil, nil, err
	}
	if _, err := openai.Decode(raw); err != nil { // no ambiguous keys here either (invariant 9)
		return nil, nil, err
	}
	var jr jobRequest
	if err := json.Unmarshal(raw, &jr); err != nil {
		return nil, nil, sluice.Invalid("", sluice.CodeInvalidJSON, "The job must be a JSON object with url and body.")
	}
	if jr.URL == nil || (*jr.URL != sluice.EndpointChat && *jr.URL != sluice.EndpointCompletion) {
		return nil, nil, sluice.Invalid("url", sluice.CodeInvalidValue,
			"url must be %s or %s.", sluice.EndpointChat, sluice.EndpointCompletion)
	}
	body := []byte(strings.TrimSpace(string(jr.Body)))
	if len(body) == 0 || body[0] != '{' {
		return nil, nil, sluice.Invalid("body", sluice.CodeInvalidValue, "body must be the JSON object of the request.")
	}
	var stream struct {
		Stream bool `json:"stream"`
	}
	if json.Unmarshal(body, &stream) == nil && stream.Stream {
		return nil, nil, sluice.Invalid("body.stream", sluice.CodeInvalidValue,
			"Async jobs cannot stream; poll GET /v1/jobs/{id} or give a webhook_url.")
	}
	req, job, err := s.admit(p, *jr.URL, body)
	if err != nil {
		if e := sluice.AsError(err); e.Param != "" {
			e2 := *e
			e2.Param = "body." + e.Param
			err = &e2
		}
		return nil, nil, err
	}
	if jr.WebhookURL != nil && *jr.WebhookURL != "" {
		if err := webhook.ValidateURL(*jr.WebhookURL, s.Config.Jobs.Webhooks.AllowPrivate); err != nil {
			return nil, nil, err
		}
		job.WebhookURL = *jr.WebhookURL
	}
	job.Async = true
	return req, job, nil
}

// replay records an Idempotency-Key for the job about to be created; for a
// key already used it answers with the job the first request created, or
// with a conflict while that one is not enqueued yet. It reports whether it
// answered.
func (s *service) replay(w http.ResponseWriter, r *http.Request, p *sluice.Principal, idem, jobID string) bool {
	id, fresh, err := s.Queue.Remember(r.Context(), p.UserID, idem, jobID)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return true
	}
	if fresh {
		return false
	}
	if _, err := s.Queue.Get(r.Context(), id, p.UserID); errors.Is(err, sluice.ErrNotFound) {
		// The first request has not enqueued it (yet, or ever: its
		// instance died); the mapping lapses within seconds.
		openai.WriteError(w, r, s.Log, sluice.Errorf(sluice.KindConflict, sluice.CodeConflict,
			"A request with this Idempotency-Key is still in progress or did not complete; retry in a few seconds."))
		return true
	}
	s.writeJob(w, r, id, p.UserID, http.StatusAccepted)
	return true
}

// enqueueJob reserves an async job's funds (the rate-limit headers go on
// w), stores its input and enqueues it; what it did is undone if a later
// step fails.
func (s *service) enqueueJob(w http.ResponseWriter, r *http.Request, p *sluice.Principal, req *openai.Request, job *sluice.Job) error {
	tk, err := s.reserve(w, r, p, req, job, true, s.Config.Jobs.AsyncDeadline)
	if err != nil {
		return err
	}
	if err = s.storeInput(r, job); err == nil {
		if err = s.Queue.Enqueue(r.Context(), job, s.Config.Jobs.AsyncDeadline); err != nil && job.BodyRef != "" {
			s.Objects.Delete(context.WithoutCancel(r.Context()), job.BodyRef) //nolint:errcheck // else the sweeper takes it
		}
	}
	if err != nil {
		s.unreserve(r, tk)
	}
	return err
}

// storeInput moves an async job's body to the object store when it is over
// storage.jobs.input_threshold_bytes; the job's record then carries only
// the key, which the worker reads back.
func (s *service) storeInput(r *http.Request, job *sluice.Job) error {
	if !s.Objects.InputOver(len(job.Body)) {
		return nil
	}
	key, err := s.Objects.PutInput(r.Context(), job.UserID, job.ID, job.Body)
	if err != nil {
		return err
	}
	job.Body, job.BodyRef = nil, key
	return nil
}

func (s *service) writeJob(w http.ResponseWriter, r *http.Request, id, owner string, status int) {
	js, err := s.Queue.Get(r.Context(), id, owner) // ownership is checked here, before any payload is read
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	if js.ResultRef != "" {
		if js.Result, err = s.Objects.Fetch(r.Context(), js.ResultRef); err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
	}
	openai.WriteJSON(w, status, js)
}

// getJob: GET /v1/jobs/{id}, the owner's only.
func (s *service) getJob(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	s.writeJob(w, r, r.PathValue("id"), p.UserID, http.StatusOK)
}

// cancelJob: DELETE /v1/jobs/{id}.
func (s *service) cancelJob(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	id := r.PathValue("id")
	if rkey.JobTag(id) == "" {
		openai.WriteError(w, r, s.Log, sluice.ErrNotFound)
		return
	}
	if _, err := s.Queue.Cancel(r.Context(), id, p.UserID); err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	s.writeJob(w, r, id, p.UserID, http.StatusOK)
}
