package submit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// ResponseStore reads and deletes stored responses, owner only;
// postgres.DB implements it. (The worker writes them: gpuworker/pool.)
type ResponseStore interface {
	GetResponse(ctx context.Context, userID, id string) (*sluice.StoredResponse, error)
	DeleteResponse(ctx context.Context, userID, id string) error
}

// responseNotFound is OpenAI's answer for an unknown response id, and
// Sluice's for another user's: it does not say which.
func responseNotFound(id, param string) error {
	return &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeNotFound, Param: param,
		Message: "Response with id '" + id + "' not found."}
}

// storedResponse is the caller's stored response id, or a 404.
func (s *service) storedResponse(ctx context.Context, userID, id, param string) (*sluice.StoredResponse, error) {
	if s.Responses == nil {
		return nil, responseNotFound(id, param)
	}
	sr, err := s.Responses.GetResponse(ctx, userID, id)
	if errors.Is(err, sluice.ErrNotFound) {
		return nil, responseNotFound(id, param)
	}
	return sr, err
}

// createResponse: POST /v1/responses, on the same queue, admission and
// ledger as chat. previous_response_id is expanded here, from the caller's
// own stored responses, into the input the engine gets, so the funds hold
// covers the whole history; store, previous_response_id and metadata stay
// with Sluice. The worker names the response (resp_ and the job id's own
// part), and stores it before the job is recorded done.
func (s *service) createResponse(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	body, err := openai.ReadBody(r, s.Config.Server.MaxBodyBytes)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	history := func(id string) ([]json.RawMessage, error) {
		sr, err := s.storedResponse(r.Context(), p.UserID, id, "previous_response_id")
		if err != nil {
			return nil, err
		}
		return historyItems(sr)
	}
	rr, err := openai.ParseResponses(body, s.Config.ForUser(p.UserID), s.limits, history)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	public := rr.Model.Name
	if rr.Requested != "" {
		public = rr.Requested
	}
	if err := authn.AllowModel(p, public); err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	st, err := openai.AllowServiceTier(s.Config, p.Tier, rr.ServiceTier)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	id := rkey.NewUserJobID(rr.Model.Name, p.UserID, s.Config.Jobs.Shards)
	job := &sluice.Job{ID: id, UserID: p.UserID, KeyID: p.KeyID, Model: rr.Model.Name, Requested: rr.Requested,
		Endpoint: sluice.EndpointResponses, Body: rr.Upstream, Stream: rr.Stream,
		Priority: s.Config.ServiceClass(p.Tier, st), ServiceTier: st,
		Response: &sluice.ResponseJob{ID: sluice.ResponseID(id), Store: rr.Store, PreviousID: rr.PreviousID,
			Metadata: rr.Metadata, TTL: s.Config.Responses.StoreTTL}}
	prefixcache.Stamp(s.Config, job)
	httpserve.SetInference(r.Context(), job.Model, true, job.Stream)
	job.Trace = telemetry.From(r.Context()).Inject(r.Context())
	tk, err := s.reserve(w, r, p, &rr.Request, job, false, s.Config.Server.RequestTimeout)
	if err != nil {
		if e := sluice.AsError(err); e.Param == "max_tokens" { // the tier's bound, under this route's name
			e2 := *e
			e2.Param = "max_output_tokens"
			e2.Message = strings.Replace(e2.Message, "max_tokens", "max_output_tokens", 1)
			err = &e2
		}
		openai.WriteError(w, r, s.Log, err)
		return
	}
	if err := s.Queue.Enqueue(r.Context(), job, s.Config.Server.RequestTimeout); err != nil {
		s.unreserve(r, tk)
		openai.WriteError(w, r, s.Log, err)
		return
	}
	lease := s.holdSlot(r, tk)
	defer lease.Release(r.Context()) // if relay has not
	w.Header().Set("Sluice-Job-Id", job.ID)
	s.relay(w, r, p, job, &rr.Request, lease)
}

// historyItems is what a stored response continues with: the input it was
// given (its own history included), then its output.
func historyItems(sr *sluice.StoredResponse) ([]json.RawMessage, error) {
	var in []json.RawMessage
	if err := json.Unmarshal(sr.Input, &in); err != nil {
		return nil, err
	}
	var obj struct {
		Output []json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(sr.Response, &obj); err != nil {
		return nil, err
	}
	return append(in, obj.Output...), nil
}

// getResponse: GET /v1/responses/{id}, the owner's stored response.
func (s *service) getResponse(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	sr, err := s.storedResponse(r.Context(), p.UserID, r.PathValue("id"), "")
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(sr.Response) //nolint:errcheck // the client may be gone
}

// deleteResponse: DELETE /v1/responses/{id}, the owner's only, answered in
// OpenAI's shape.
func (s *service) deleteResponse(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	id := r.PathValue("id")
	if s.Responses == nil {
		openai.WriteError(w, r, s.Log, responseNotFound(id, ""))
		return
	}
	if err := s.Responses.DeleteResponse(r.Context(), p.UserID, id); err != nil {
		if errors.Is(err, sluice.ErrNotFound) {
			err = responseNotFound(id, "")
		}
		openai.WriteError(w, r, s.Log, err)
		return
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}
