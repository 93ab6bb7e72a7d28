package app

import (
	"context"
	"net/http"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// openTelemetry builds the process's telemetry and its scrape-time
// collectors: the queues (Redis), the business figures (PostgreSQL, from
// the read replica when there is one) and the read replica's routing.
func openTelemetry(ctx context.Context, d *Deps, o telemetry.Options) (*telemetry.Telemetry, error) {
	cfg := d.Config
	t, err := telemetry.New(ctx, cfg.Telemetry, d.Log, o)
	if err != nil {
		return nil, err
	}
	models := cfg.QueueModels() // LoRA adapters have queues of their own
	t.InitModels(models)
	err = t.Register(
		&redisq.QueueCollector{Queue: d.Queue, Models: models, Priorities: config.Priorities},
		d.ReadDB, // the read replica's routing, lag and fallbacks
		&redisq.WaitCollector{Durable: d.Queue.Durable()},
		&postgres.BusinessCollector{DB: d.ReadDB, Pricing: cfg.Pricing, TopN: cfg.Telemetry.TopUsers, Refresh: cfg.Telemetry.BusinessRefresh},
	)
	return t, err
}

// Serve wraps a function's or the worker's handler with /metrics, /healthz
// and /readyz, and puts the telemetry in each request's context.
func (d *Deps) Serve(h http.Handler) http.Handler {
	return telemetry.Handler(d.Telemetry, d.Ready, d.Log, h)
}
