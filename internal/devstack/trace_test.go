package devstack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// TestOneTraceAcrossTheJobPath sends one request through the whole stack
// with tracing on and an in-memory exporter, and checks that its spans form
// one trace: client → gateway → submit → queue wait → worker → engine call,
// each the child of the one before.
func TestOneTraceAcrossTheJobPath(t *testing.T) {
	t.Parallel()
	sim := testenv.Sim(t)
	model := testenv.Name("trace")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - name: %s
      max_model_len: 1024
pricing: {}
telemetry:
  tracing:
    enabled: true
`, model)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env = config.Env{DatabaseURL: pgtest.NewURL(t), RedisURL: testenv.RedisURL(), KeyPepper: testenv.Pepper,
		WebhookSecret: "whsec-test", WorkerName: testenv.Name("w")}
	exp := tracetest.NewInMemoryExporter()
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dir: t.TempDir(), SimBin: sim, Telemetry: telemetry.Options{SpanExporter: exp}}, ln)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); st.Wait() }) //nolint:errcheck

	// The client's own trace context: Sluice continues it.
	const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", "http://"+st.Addr+"/v1/chat/completions",
		strings.NewReader(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, model)))
	req.Header.Set("Authorization", "Bearer "+st.AdminKey)
	req.Header.Set("traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// Each span and its parent; the queue wait is recorded after the fact
	// as a child of submit, beside the worker's span that follows it.
	parents := []struct{ name, parent string }{
		{"gateway ", ""}, // the client's span
		{"submit POST /v1/chat/completions", "gateway "},
		{"queue.wait", "submit POST /v1/chat/completions"},
		{"worker.job", "submit POST /v1/chat/completions"},
		{"engine.request", "worker.job"},
	}
	find := func(spans tracetest.SpanStubs, prefix string) (tracetest.SpanStub, bool) {
		for _, s := range spans {
			if s.SpanContext.TraceID().String() == clientTrace && strings.HasPrefix(s.Name, prefix) {
				return s, true
			}
		}
		return tracetest.SpanStub{}, false
	}
	var spans tracetest.SpanStubs
	byName := map[string]tracetest.SpanStub{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		spans = exp.GetSpans()
		for _, p := range parents {
			if s, ok := find(spans, p.name); ok {
				byName[p.name] = s
			}
		}
		if len(byName) == len(parents) {
			break
		}
	}
	for _, p := range parents {
		s, ok := byName[p.name]
		if !ok {
			var got []string
			for _, s := range spans {
				got = append(got, s.Name+"@"+s.SpanContext.TraceID().String()[:8])
			}
			t.Fatalf("no span %q in the client's trace; spans: %v", p.name, got)
		}
		want := "00f067aa0ba902b7"
		if p.parent != "" {
			want = byName[p.parent].SpanContext.SpanID().String()
		}
		if s.Parent.SpanID().String() != want {
			t.Errorf("%s: parent %s, want %s (%s)", s.Name, s.Parent.SpanID(), want, p.parent)
		}
	}
	q := byName["queue.wait"]
	if q.EndTime.Before(q.StartTime) || q.EndTime.After(byName["worker.job"].StartTime.Add(time.Second)) {
		t.Errorf("queue.wait [%v, %v] does not end where worker.job starts (%v)", q.StartTime, q.EndTime, byName["worker.job"].StartTime)
	}
	if w, e := byName["worker.job"], byName["engine.request"]; e.StartTime.Before(w.StartTime) || e.EndTime.After(w.EndTime) {
		t.Errorf("engine.request [%v, %v] is not inside worker.job [%v, %v]", e.StartTime, e.EndTime, w.StartTime, w.EndTime)
	}
}
