package pool

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/internal/artifact"
	"github.com/sluice-ai/sluice/shared/config"
)

// LoRA adapters. Each adapter of a model is a runner of its own (its own
// queue, claimed through the same fair claim as any model) whose endpoints
// are its parent's endpoint objects: the parent and its adapters take
// slots from one counter per endpoint, so together they never run more
// than max_batch_size (+ margin) there. An adapter's runner counts and
// picks only the endpoints whose engine lists the adapter on GET
// /v1/models (read every dispatch.health_interval), so its jobs land only
// where it is loaded. When no endpoint lists it, the runner loads it on
// the endpoint with the fewest adapters that has room under max_loras,
// after verifying its signed artifact (adapters without a version are
// never loaded at run time).

// adapterTimeout bounds one listing or load request to an engine.
const adapterTimeout = 10 * time.Second

// loadEvery is the least time between two load tries of one adapter in one
// worker: an engine that refuses (runtime loading off) is not asked again
// at once.
const loadEvery = 5 * time.Second

// adapterRunners builds parent's adapters' runners on parent's endpoints.
func adapterRunners(p *Pool, parent *runner) []*runner {
	var out []*runner
	for _, m := range p.Config.AdapterModels(parent.model.Name) {
		r := &runner{p: p, model: m, wake: make(chan struct{}, 1), eps: parent.eps, parent: parent}
		r.streams = p.Queue.Streams(m.Name, config.Priorities)
		r.adapter, _ = p.Config.AdapterOf(m.Name)
		out = append(out, r)
	}
	family := append([]*runner{parent}, out...)
	for _, r := range family {
		r.family = family
	}
	return out
}

// usable reports whether the runner's jobs may run on e: always for a
// model, only where the engine lists the adapter for an adapter.
func (r *runner) usable(e *endpoint) bool {
	if r.parent == nil {
		return true
	}
	a := e.adapters.Load()
	return a != nil && (*a)[r.model.Name]
}

// listAdapters keeps e's list of loaded adapters current while e is in
// rotation; a failed read keeps the last list.
func (r *runner) listAdapters(ctx context.Context, e *endpoint) {
	warned := false
	for ctx.Err() == nil {
		if e.healthy.Load() {
			if err := r.refreshAdapters(ctx, e); err != nil && !warned && ctx.Err() == nil {
				warned = true
				r.p.Log.WarnContext(ctx, "engine's adapters unreadable", slog.String("endpoint", e.client.Base), slog.String("err", err.Error()))
			} else if err == nil {
				warned = false
			}
		}
		sleep(ctx, r.p.Config.Dispatch.HealthInterval)
	}
}

// refreshAdapters reads e's adapters and wakes the family when they changed.
func (r *runner) refreshAdapters(ctx context.Context, e *endpoint) error {
	got, err := e.client.Adapters(ctx, adapterTimeout)
	if err != nil {
		return err
	}
	old := e.adapters.Swap(&got)
	if old == nil || !sameSet(*old, got) {
		r.signal()
	}
	return nil
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// maybeLoad loads the runner's adapter on one endpoint when none lists it:
// the healthy endpoint with a known list, room under max_loras and the
// fewest adapters. The artifact is verified (signature and checksums) and
// written to the adapter's source first, once per worker; a failure is
// logged and tried again after loadEvery.
func (r *runner) maybeLoad(ctx context.Context) {
	if r.parent == nil || r.adapter.Version == "" || time.Since(r.lastLoad) < loadEvery {
		return
	}
	var best *endpoint
	bestN := 0
	for _, e := range r.eps {
		a := e.adapters.Load()
		if !e.healthy.Load() || a == nil {
			continue
		}
		if (*a)[r.model.Name] {
			return // served: nothing to load
		}
		if n := len(*a); n < r.model.MaxLoRAs && (best == nil || n < bestN) {
			best, bestN = e, n
		}
	}
	if best == nil {
		return
	}
	r.lastLoad = time.Now()
	log := r.p.Log.With(slog.String("adapter", r.model.Name), slog.String("endpoint", best.client.Base))
	if !r.verified {
		if err := r.verifyAdapter(ctx); err != nil {
			log.ErrorContext(ctx, "adapter not loaded: its artifact does not verify", slog.String("err", err.Error()))
			return
		}
		r.verified = true
	}
	if err := best.client.LoadAdapter(ctx, r.adapter.Name, r.adapter.Source, adapterTimeout); err != nil {
		log.WarnContext(ctx, "engine did not load the adapter (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)", slog.String("err", err.Error()))
		return
	}
	log.InfoContext(ctx, "adapter loaded", slog.String("source", r.adapter.Source))
	if err := r.refreshAdapters(ctx, best); err != nil {
		log.WarnContext(ctx, "engine's adapters unreadable after the load", slog.String("err", err.Error()))
	}
}

// verifyAdapter checks the adapter's signed artifact and writes its files
// to the adapter's source, where the engine loads them from.
func (r *runner) verifyAdapter(ctx context.Context) error {
	if r.p.adapterKey == nil || r.p.Artifacts == nil {
		return fmt.Errorf("no adapter public key or artifact store")
	}
	_, err := artifact.Verify(ctx, r.p.Artifacts, r.p.Config.Storage.ModelPrefix, r.adapter.Name, r.adapter.Version, r.p.adapterKey, r.adapter.Source)
	return err
}

// loadAdapterKey reads inference.adapter_public_key, when set.
func loadAdapterKey(cfg *config.Config) (ed25519.PublicKey, error) {
	if cfg.Inference.AdapterPublicKey == "" {
		return nil, nil
	}
	return artifact.LoadPublicKey(cfg.Inference.AdapterPublicKey)
}
