package submit

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// FallbackHeader names, on a response, the model a request asked for and
// the fallback that served it: "<model>-><fallback>".
const FallbackHeader = "Sluice-Fallback"

// healthTTL is how long one reading of a model's published endpoint health
// serves: the workers publish it every second.
const healthTTL = time.Second

// fallback sends a request whose model cannot take it now (no healthy
// endpoint, or its queue is full: what would be no_capacity) to the first
// of the model's fallbacks that the caller's key may use, that accepts the
// request as it is, and that can take it. It decides before admission: a
// job belongs to its model's queue from enqueue on, so the hold is taken at
// the fallback's prices on the fallback's queue. Anything else (a model
// without fallbacks, a model that can take the request, no fallback that
// can either, an unreadable health) keeps the request where it is.
func (s *service) fallback(w http.ResponseWriter, r *http.Request, p *sluice.Principal, endpoint string, body []byte,
	req *openai.Request, job *sluice.Job) (*openai.Request, *sluice.Job) {
	m := req.Model
	if len(m.Fallbacks) == 0 || s.canTake(r.Context(), job) {
		return req, job
	}
	for _, name := range m.Fallbacks {
		fm, ok := s.Config.Model(name)
		if !ok || authn.AllowModel(p, name) != nil {
			continue
		}
		// Parsed again for the fallback: its context, allowed fields and
		// template overheads bound the request, and the engine gets its name.
		freq, err := openai.Parse(endpoint, body, onlyModel{fm}, s.limits)
		if err != nil {
			continue
		}
		fjob := s.newJob(p, endpoint, freq, job.ServiceTier)
		if !s.canTake(r.Context(), fjob) {
			continue
		}
		w.Header().Set(FallbackHeader, m.Name+"->"+fm.Name)
		telemetry.From(r.Context()).Fallback(m.Name, fm.Name)
		s.Log.InfoContext(r.Context(), "request sent to a fallback model", slog.String("model", m.Name), slog.String("fallback", fm.Name))
		return freq, fjob
	}
	return req, job
}

// canTake reports whether job's model can take it now: some live worker
// publishes a healthy endpoint of it, and the stream the job would join is
// not full. A failed read says yes: the request stays where it was sent.
func (s *service) canTake(ctx context.Context, job *sluice.Job) bool {
	if !s.healthy(ctx, job.Model) {
		return false
	}
	room, err := s.Queue.HasRoom(ctx, job.ID, job.Model, job.Priority)
	return err != nil || room
}

// healthy reports whether any live worker publishes a healthy endpoint of
// model (redisq.Endpoints), from a reading at most healthTTL old. A model
// no worker publishes (none running, or scaled to zero) has none.
func (s *service) healthy(ctx context.Context, model string) bool {
	if v, ok := s.health.Load(model); ok {
		if h := v.(healthReading); time.Since(h.at) < healthTTL {
			return h.ok
		}
	}
	ws, err := s.Queue.Endpoints(ctx, model)
	if err != nil {
		return true
	}
	ok := redisq.Health(ws).Healthy > 0
	s.health.Store(model, healthReading{ok: ok, at: time.Now()})
	return ok
}

// healthReading is one cached reading of a model's endpoint health.
type healthReading struct {
	ok bool
	at time.Time
}

// onlyModel resolves every name to one model: Parse then checks the
// request against the fallback and names it upstream, keeping the name the
// client sent as the requested one.
type onlyModel struct{ m *config.Model }

func (o onlyModel) Model(string) (*config.Model, bool) { return o.m, true }
