package submit

import (
	"net/http"

	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
)

// permAdminStatus guards the operator's status view; only the admin role's
// "*" grants it by default.
const permAdminStatus = "admin:status"

type modelStatus struct {
	Model string `json:"model"`
	// Parent is set for a LoRA adapter: its endpoints are the parent's
	// that list it (an endpoint is healthy here only while it does).
	Parent string `json:"parent,omitempty"`
	redisq.ModelHealth
	Queues  []redisq.PriorityStats `json:"queues"`
	Workers []workerStatus         `json:"workers"`
}

type workerStatus struct {
	Worker      string                  `json:"worker"`
	ExpiresInMS int64                   `json:"expires_in_ms"`
	Endpoints   []redisq.EndpointStatus `json:"endpoints"`
}

// status: GET /v1/admin/status, per model: queue depth and lag by priority,
// the live workers and each engine endpoint's health and load.
func (s *service) status(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, permAdminStatus)
	if err == nil { // an admin route: the one admin-MFA rule applies
		err = authn.RequireAdminMFA(p, s.Config.Permissions(p.Role), s.Config.Auth.Identity.RequireMFAForAdmin)
	}
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	names := s.Config.QueueModels() // models, then LoRA adapters
	out := make([]modelStatus, 0, len(names))
	for _, name := range names {
		m, _ := s.Config.Model(name)
		qs, err := s.Queue.QueueStats(r.Context(), m.Name, config.Priorities)
		if err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
		ws, err := s.Queue.Endpoints(r.Context(), m.Name)
		if err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
		ms := modelStatus{Model: m.Name, Parent: m.Parent, ModelHealth: redisq.Health(ws), Queues: qs, Workers: []workerStatus{}}
		for _, we := range ws {
			ms.Workers = append(ms.Workers, workerStatus{Worker: we.Worker, ExpiresInMS: we.ExpiresIn.Milliseconds(), Endpoints: we.Endpoints})
		}
		out = append(out, ms)
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "status", "models": out})
}
