package httpserve_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// BenchmarkRequestTelemetry is the CPU cost of telemetry on one request's
// path, submit and worker sides together, with telemetry off, metrics only
// (the default) and metrics plus tracing of every request (real OTLP/HTTP
// exporter, batched, to a local sink): the middleware, the handler's hooks,
// the trace context carried in the job, the queue-wait, worker and engine
// spans, and the worker's metrics. Nothing else is done, so the figures are
// the overhead alone.
func BenchmarkRequestTelemetry(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck
	}))
	defer sink.Close()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	variants := []struct {
		name string
		cfg  config.Telemetry
	}{
		{"off", config.Telemetry{MetricsOff: true}},
		{"metrics", config.Telemetry{}},
		{"metrics+tracing", config.Telemetry{Tracing: config.Tracing{Enabled: true, Endpoint: sink.URL, SampleRatio: 1, ServiceName: "bench"}}},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			t, err := telemetry.New(context.Background(), v.cfg, log, telemetry.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer t.Shutdown(context.Background()) //nolint:errcheck
			usage := sluice.Usage{PromptTokens: 20, CompletionTokens: 16}
			mux := http.NewServeMux()
			mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				tel := telemetry.From(ctx)
				httpserve.SetUser(ctx, "user-1")
				httpserve.SetInference(ctx, "bench-7b", true, false)
				trace := tel.Inject(ctx) // into the job
				// The worker's side of the same job.
				created := time.Now()
				jctx := tel.Extract(context.Background(), trace)
				tel.Record(jctx, "queue.wait", created, created.Add(time.Millisecond))
				tel.JobStarted("bench-7b", 1, "run", time.Millisecond)
				jctx, span := tel.Start(jctx, "worker.job", telemetry.KindConsumer)
				ectx, es := tel.Start(jctx, "engine.request", telemetry.KindClient)
				tel.InjectHTTP(ectx, http.Header{})
				es.End(nil)
				tel.JobDone("bench-7b", sluice.JobSucceeded, 2*time.Millisecond, usage, 3600)
				span.End(nil)
				w.WriteHeader(http.StatusOK)
			})
			h := telemetry.Handler(t, nil, log, httpserve.Middleware(log, "submit", mux))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/chat/completions", nil))
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
