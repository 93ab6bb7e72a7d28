package submit

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// admitter is admission as submit uses it: admitting (the Admitter) or
// noAdmission, which admits everything.
type admitter interface {
	// admit checks a request against its caller's limits and reserves its
	// lease and funds; the rate-limit headers go on h.
	admit(ctx context.Context, h http.Header, req admission.Request) (*admission.Ticket, error)
	// caching reports whether the response cache is there.
	caching() bool
	Release(ctx context.Context, tk *admission.Ticket)
	KeepAlive(ctx context.Context, tk *admission.Ticket) *admission.Lease
	CacheGet(ctx context.Context, userID, model, endpoint string, body []byte) (*admission.Cached, error)
	CacheHit(ctx context.Context, tk *admission.Ticket, keyID, model, endpoint string, c *admission.Cached) error
	CachePut(ctx context.Context, userID, model, endpoint string, body []byte, c admission.Cached) error
}

// admitting is the Admitter: limits, lease and funds in one Redis script.
type admitting struct{ *admission.Admitter }

func (a admitting) admit(ctx context.Context, h http.Header, req admission.Request) (*admission.Ticket, error) {
	if err := a.CheckInput(req.Tier, req.MaxTokens); err != nil {
		return nil, err
	}
	tk, err := a.Admit(ctx, req)
	tk.WriteHeaders(h, err != nil) // either way
	return tk, err
}

func (admitting) caching() bool { return true }

// noAdmission admits everything, reserves nothing, writes no rate-limit
// headers and caches nothing.
type noAdmission struct{}

func (noAdmission) admit(context.Context, http.Header, admission.Request) (*admission.Ticket, error) {
	return &admission.Ticket{}, nil
}
func (noAdmission) caching() bool                                                 { return false }
func (noAdmission) Release(context.Context, *admission.Ticket)                    {}
func (noAdmission) KeepAlive(context.Context, *admission.Ticket) *admission.Lease { return nil }
func (noAdmission) CacheGet(context.Context, string, string, string, []byte) (*admission.Cached, error) {
	return nil, nil
}
func (noAdmission) CacheHit(context.Context, *admission.Ticket, string, string, string, *admission.Cached) error {
	return nil
}
func (noAdmission) CachePut(context.Context, string, string, string, []byte, admission.Cached) error {
	return nil
}

// reserve runs admission for a validated job.
func (s *service) reserve(w http.ResponseWriter, r *http.Request, p *sluice.Principal, req *openai.Request,
	job *sluice.Job, async bool, timeout time.Duration) (*admission.Ticket, error) {
	tk, err := s.adm.admit(r.Context(), w.Header(), admission.Request{JobID: job.ID, UserID: p.UserID, Tier: p.Tier,
		Model: req.Model, PromptBytes: req.PromptBytes, ExtraTokens: req.ExtraTokens, Messages: req.Messages,
		MaxTokens: req.MaxTokens, Room: req.Room, Prompts: req.Prompts, Choices: req.Choices, NoCompletion: req.NoCompletion, ServiceTier: job.ServiceTier, Async: async, Timeout: timeout, Limits: p.Limits, Period: p.Period})
	if err != nil {
		return nil, err
	}
	job.Reserved = tk.Reserved
	job.Hold = tk.Hold
	return tk, nil
}

// unreserve gives back a reservation whose job was not enqueued.
func (s *service) unreserve(r *http.Request, tk *admission.Ticket) { s.adm.Release(r.Context(), tk) }

// holdSlot keeps a synchronous request's concurrency lease alive while it
// waits; its Release (or ReleaseIn) gives the slot back.
func (s *service) holdSlot(r *http.Request, tk *admission.Ticket) *admission.Lease {
	return s.adm.KeepAlive(r.Context(), tk)
}

// cacheable: the caller opted in and the request is deterministic and not
// streamed. A request's `Sluice-Cache: on|off` header decides; without it,
// the API key's cache_responses setting does.
func (s *service) cacheable(r *http.Request, p *sluice.Principal, req *openai.Request) bool {
	if !s.adm.caching() || !req.Deterministic || req.Stream {
		return false
	}
	switch r.Header.Get("Sluice-Cache") {
	case "on":
		return true
	case "off":
		return false
	}
	return p.CacheResponses
}

// serveCached answers a cacheable request from the response cache, if it
// holds one: no GPU, billed at the model's cached_response price. It
// reports whether it answered.
func (s *service) serveCached(w http.ResponseWriter, r *http.Request, p *sluice.Principal, req *openai.Request,
	job *sluice.Job, tk *admission.Ticket) bool {
	if !s.cacheable(r, p, req) || !tk.Reserved {
		return false
	}
	c, err := s.adm.CacheGet(r.Context(), p.UserID, job.Model, job.Endpoint, job.Body)
	if err != nil || c == nil || s.adm.CacheHit(r.Context(), tk, p.KeyID, job.Model, job.Endpoint, c) != nil {
		w.Header().Set("Sluice-Cache", "miss")
		return false
	}
	s.holdSlot(r, tk).Release(r.Context()) // the slot is free at once; settlement drops the hold
	w.Header().Set("Sluice-Job-Id", job.ID)
	w.Header().Set("Sluice-Cache", "hit")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(openai.EchoServiceTier([]byte(c.Result), job.ServiceTier)) //nolint:errcheck // the client may be gone
	s.delivered(r, job.ID, "", false)
	return true
}

// cacheStore keeps a successful answer to a cacheable request.
func (s *service) cacheStore(r *http.Request, p *sluice.Principal, job *sluice.Job, req *openai.Request, ev redisq.Event) {
	// A result large enough for the object store stays out of the cache,
	// which lives in Redis.
	if !s.cacheable(r, p, req) || ev.Status != sluice.JobSucceeded || ev.Result == "" || ev.ResultRef != "" {
		return
	}
	if err := s.adm.CachePut(context.WithoutCancel(r.Context()), job.UserID, job.Model, job.Endpoint, job.Body,
		admission.Cached{Result: ev.Result, Usage: ev.Usage}); err != nil {
		s.Log.WarnContext(r.Context(), "response cache write failed", slog.String("err", err.Error()))
	}
}
