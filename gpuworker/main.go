// Command gpuworker is the long-running GPU worker: it runs beside its vLLM
// replicas, pulls jobs from Redis only when an engine has room, and records
// results and usage exactly once. Same configuration and environment as the
// functions (SLUICE_CONFIG, DATABASE_URL, REDIS_URL), less SLUICE_KEY_PEPPER:
// it verifies no credential.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	gputelemetry "github.com/sluice-ai/sluice/gpuworker/telemetry"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/batch/driver"
	"github.com/sluice-ai/sluice/shared/httpserve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Getenv)
	stop()
	os.Exit(code)
}

// run serves until ctx ends; getenv is the environment.
func run(ctx context.Context, getenv func(string) string) int {
	d, err := app.FromEnvAs(ctx, app.Worker, getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpuworker:", err)
		return 1
	}
	defer d.Close()
	// The worker signs every job webhook with this secret; an empty one
	// would sign with an empty key, and anyone could forge a delivery.
	if len(d.Config.Env.WebhookSecret) < 32 {
		fmt.Fprintln(os.Stderr, "gpuworker: SLUICE_WEBHOOK_SECRET (or the secret file sluice-webhook-secret): must be set to at least 32 bytes (e.g. `openssl rand -hex 32`); it signs job webhooks")
		return 1
	}
	p, err := pool.New(pool.Deps{Config: d.Config, Log: d.Log, Queue: d.Queue, Usage: d.DB, Name: d.Config.Env.WorkerName,
		Telemetry: d.Telemetry, Objects: d.Objects})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpuworker:", err)
		return 1
	}
	if addr := d.Config.Worker.Listen; addr != "off" {
		// /metrics, /healthz and /readyz for Prometheus and the orchestrator.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gpuworker: worker.listen:", err)
			return 1
		}
		// The GPUs are read through NVML at each scrape; without a driver
		// Open logs one line and the worker exports sluice_gpu_devices 0.
		gpus := gputelemetry.Open(d.Log)
		defer gpus.Close() //nolint:errcheck // the process is ending
		d.Telemetry.GPUs(gputelemetry.Source(gpus))
		go httpserve.Serve(ctx, ln, d.Serve(nil), 5*time.Second) //nolint:errcheck // ends with ctx
		d.Log.InfoContext(ctx, "worker telemetry listening", slog.String("addr", ln.Addr().String()))
	}
	// Batches are driven here, beside the engines, never in a function.
	go driver.FromDeps(d).Run(ctx) //nolint:errcheck // ends with ctx
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "gpuworker:", err)
		return 1
	}
	return 0
}
