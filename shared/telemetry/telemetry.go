// Package telemetry is Sluice's observability: Prometheus metrics (one
// registry per process, served on /metrics), OpenTelemetry traces (off by
// default), the health endpoints, and the scrape-time collectors that read
// queue state from Redis and business figures from PostgreSQL.
//
// A nil *Telemetry is valid and does nothing, so code on the request path
// observes unconditionally; with metrics and tracing off the cost is a nil
// check. The functions find it in the request context (put there by Handler)
// and the worker gets it in its Deps.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Telemetry is one process's metrics registry and tracer.
type Telemetry struct {
	// Registry holds every Sluice collector; nil with metrics off.
	Registry *prometheus.Registry
	m        *metricSet
	gpu      *gpuCollector // nil with metrics off

	tp     *sdktrace.TracerProvider // nil with tracing off
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	log    *slog.Logger
}

// Options adjust New; the zero value is what programs use.
type Options struct {
	// SpanExporter replaces the OTLP exporter (tests pass an in-memory one);
	// spans are then exported synchronously as they end.
	SpanExporter sdktrace.SpanExporter
}

// New builds the process's telemetry from the configuration. With metrics
// and tracing both off it returns nil, which every method accepts.
func New(ctx context.Context, cfg config.Telemetry, log *slog.Logger, o Options) (*Telemetry, error) {
	if cfg.MetricsOff && !cfg.Tracing.Enabled {
		return nil, nil
	}
	t := &Telemetry{log: log}
	if !cfg.MetricsOff {
		t.Registry = prometheus.NewRegistry()
		t.gpu = &gpuCollector{log: log}
		t.Registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			diskCollector{},
			t.gpu,
		)
		t.m = newMetricSet(t.Registry)
	}
	if cfg.Tracing.Enabled {
		if err := t.startTracing(ctx, cfg.Tracing, o.SpanExporter); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Shutdown flushes buffered spans.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil || t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Register adds collectors (the queue and business collectors) to the
// registry; a no-op with metrics off.
func (t *Telemetry) Register(cs ...prometheus.Collector) error {
	if t == nil || t.Registry == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if err := t.Registry.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

type ctxKey struct{}

// With returns ctx carrying t.
func With(ctx context.Context, t *Telemetry) context.Context {
	if t == nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, t)
}

// From returns the telemetry in ctx, or nil.
func From(ctx context.Context) *Telemetry {
	t, _ := ctx.Value(ctxKey{}).(*Telemetry)
	return t
}

// Handler serves /metrics, /healthz (alive) and /readyz (ready checks the
// dependencies) and passes every other request to next with t in its
// context. Each function and the worker is wrapped in one.
func Handler(t *Telemetry, ready func(context.Context) error, log *slog.Logger, next http.Handler) http.Handler {
	var metrics http.Handler
	if t != nil && t.Registry != nil {
		metrics = promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			switch r.URL.Path {
			case "/metrics":
				if metrics != nil {
					metrics.ServeHTTP(w, r)
					return
				}
			case "/healthz":
				openai.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
				return
			case "/readyz":
				if ready != nil {
					if err := ready(r.Context()); err != nil {
						openai.WriteError(w, r, log, sluice.Unavailable("Not ready.", err))
						return
					}
				}
				openai.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
				return
			}
		}
		if next == nil {
			openai.WriteError(w, r, log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
				"Unknown request URL: %s %s.", r.Method, r.URL.Path))
			return
		}
		if t != nil && From(r.Context()) != t {
			r = r.WithContext(With(r.Context(), t))
		}
		next.ServeHTTP(w, r)
	})
}
