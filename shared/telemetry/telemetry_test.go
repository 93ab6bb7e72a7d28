package telemetry_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// TestOffIsNil: with metrics and tracing off there is no telemetry at all;
// every hook accepts nil, and the health endpoints still answer.
func TestOffIsNil(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), config.Telemetry{MetricsOff: true}, discard, telemetry.Options{})
	if err != nil || tel != nil {
		t.Fatalf("New with everything off: %v, %v; want nil, nil", tel, err)
	}
	tel.ObserveHTTP("submit", "", 200, time.Millisecond)
	tel.JobDone("m", sluice.JobSucceeded, time.Second, sluice.Usage{CompletionTokens: 3}, 10)
	tel.Webhook(true)
	ctx, span := tel.Start(context.Background(), "x", telemetry.KindInternal)
	span.End(errors.New("boom"))
	if tel.Inject(ctx) != "" || tel.Tracing() {
		t.Error("tracing is off but a trace context came out")
	}
	h := telemetry.Handler(tel, func(context.Context) error { return errors.New("redis down") }, discard, nil)
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, `"error"`) || strings.Contains(body, "redis down") {
		t.Errorf("/readyz with a dependency down: %d %s (want an OpenAI-shaped 503 without the cause)", code, body)
	}
	if code, _ := get(t, h, "/metrics"); code != 404 {
		t.Errorf("/metrics with metrics off: %d, want 404", code)
	}
}

// TestMetricsExposition: observations show up on /metrics under their
// conventional names, per model, and costs are exported in dollars.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), config.Telemetry{}, discard, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tel.InitModels([]string{"m1"})
	tel.JobStarted("m1", 1, "run", 250*time.Millisecond)
	tel.JobDone("m1", sluice.JobSucceeded, 2*time.Second, sluice.Usage{PromptTokens: 10, CompletionTokens: 20}, 3_000_000)
	h := telemetry.Handler(tel, nil, discard, nil)
	code, body := get(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`sluice_queue_wait_seconds_count{model="m1",priority="1"} 1`,
		`sluice_tokens_total{model="m1",type="completion"} 20`,
		`sluice_billed_dollars_total{model="m1"} 3`,
		`sluice_output_tokens_per_second_sum{model="m1"} 10`,
		`sluice_engine_retries_total{model="m1"} 0`,
		`sluice_jobs_completed_total{model="m1",status="failed"} 0`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
