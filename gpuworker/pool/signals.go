package pool

import (
	"context"
	"errors"

	"github.com/sluice-ai/sluice/shared/config"
)

// QueueSignal is one model and priority class's queue state, the signal an
// autoscaler (KEDA, an HPA on external metrics) scales workers on.
type QueueSignal struct {
	Model    string
	Priority int
	Queued   int64 // jobs waiting in the fair queue
	Lag      int64 // job-stream entries not yet delivered (handed back on drain)
	Running  int64 // jobs claimed by a worker and not yet acknowledged
}

// EndpointState is one engine endpoint as this worker sees it.
type EndpointState struct {
	Model    string
	URL      string
	Engine   string
	Healthy  bool
	InFlight int64   // requests this worker has sent and not finished
	Free     int64   // more it would send now
	Running  int     // the engine's own count, -1 if it reports none
	Waiting  int     // queued inside the engine, -1 if it reports none
	KVCache  float64 // 0..1, -1 if it reports none
	TakeOuts int64   // times taken out of rotation since the worker started
}

// Signals reads the queue state of every model this worker serves, for
// export as metrics. Queue state is global (all workers share the queue),
// so any one worker's reading is the model's.
func (p *Pool) Signals(ctx context.Context) ([]QueueSignal, error) {
	var out []QueueSignal
	var errs []error
	for _, r := range p.runners {
		bl, err := p.Queue.Backlog(ctx, r.model.Name, config.Priorities)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for prio, b := range bl {
			out = append(out, QueueSignal{Model: r.model.Name, Priority: prio, Queued: b.Queued, Lag: b.Lag, Running: b.Pending})
		}
	}
	return out, errors.Join(errs...)
}

// Endpoints reports each endpoint's health, slots and last engine reading.
func (p *Pool) Endpoints() []EndpointState {
	var out []EndpointState
	for _, r := range p.runners {
		for _, e := range r.eps {
			s := EndpointState{Model: r.model.Name, URL: e.client.Base, Engine: e.kind, Healthy: e.healthy.Load(),
				InFlight: e.inflight.Load(), Free: e.free(), Running: -1, Waiting: -1, KVCache: -1,
				TakeOuts: e.takeOuts.Load()}
			if l := e.load.Load(); l != nil {
				s.Running, s.Waiting, s.KVCache = l.Running, l.Waiting, l.KVCache
			}
			out = append(out, s)
		}
	}
	return out
}
