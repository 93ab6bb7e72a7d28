package submit

import (
	"net/http"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// reserve runs admission for a validated job: limits, lease and funds in one
// Redis script. The rate-limit headers go on the response either way.
func (s *service) reserve(w http.ResponseWriter, r *http.Request, p *sluice.Principal, req *openai.Request,
	job *sluice.Job, async bool, timeout time.Duration) (*admission.Ticket, error) {
	if s.Admission == nil {
		return &admission.Ticket{}, nil
	}
	if err := s.Admission.CheckInput(p.Tier, req.MaxTokens); err != nil {
		return nil, err
	}
	tk, err := s.Admission.Admit(r.Context(), admission.Request{JobID: job.ID, UserID: p.UserID, Tier: p.Tier,
		Model: req.Model, PromptBytes: req.PromptBytes, Messages: req.Messages, MaxTokens: req.MaxTokens,
		Choices: req.Choices, Async: async, Timeout: timeout})
	tk.WriteHeaders(w.Header(), err != nil)
	if err != nil {
		return nil, err
	}
	job.Reserved = tk.Reserved
	return tk, nil
}

// unreserve gives back a reservation whose job was not enqueued.
func (s *service) unreserve(r *http.Request, tk *admission.Ticket) {
	if s.Admission != nil {
		s.Admission.Release(r.Context(), tk)
	}
}

// holdSlot keeps a synchronous request's concurrency lease alive while it
// waits; the returned func gives the slot back.
func (s *service) holdSlot(r *http.Request, tk *admission.Ticket) func() {
	if s.Admission == nil {
		return func() {}
	}
	return s.Admission.KeepAlive(r.Context(), tk)
}
