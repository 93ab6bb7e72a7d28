package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// scrape reads a /metrics page into its metric families.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value sums the samples of a family whose labels include want (counter,
// gauge, or a histogram's count).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			ok := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// TestMetricsMoveWithTraffic scrapes the running stack before and after
// traffic: the application, queue, worker, business and process metrics are
// there and move; every function answers /metrics, /healthz and /readyz;
// the dashboards and alert rules name only metrics the stack exports.
func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	s := startStack(t, "telemetry:\n  business_refresh: 1ms\n")
	chat := s.models[0]
	before := scrape(t, s.base+"/metrics")
	for i := range 2 {
		code, out := s.do(t, "POST", "/v1/chat/completions",
			fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, chat))
		if code != 200 {
			t.Fatalf("chat %d: %d %v", i, code, out)
		}
	}
	// A streamed one, read to its end.
	req, _ := http.NewRequest("POST", s.base+"/v1/chat/completions",
		strings.NewReader(fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, chat)))
	req.Header.Set("Authorization", "Bearer "+s.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sse, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(sse), "[DONE]") {
		t.Fatalf("stream: %d %s", resp.StatusCode, sse)
	}
	if code, _ := s.do(t, "POST", "/v1/chat/completions", `{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`); code != 404 {
		t.Fatalf("unknown model: %d", code)
	}
	// Usage rows reach PostgreSQL in batches, endpoint status every second.
	var after map[string]*dto.MetricFamily
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = scrape(t, s.base+"/metrics")
		users, _ := value(after, "sluice_active_users", map[string]string{"window": "1h"})
		healthy, _ := value(after, "sluice_model_healthy_endpoints", map[string]string{"model": chat})
		rows, _ := value(after, "sluice_usage_rows_total", map[string]string{"result": "written"})
		// A health poll that timed out on a loaded machine takes the
		// endpoint out until the next one: wait for it to be back.
		up, _ := value(after, "sluice_engine_endpoint_up", map[string]string{"model": chat})
		if (users >= 1 && healthy == 1 && rows >= 3 && up >= 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	moved := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"sluice_http_requests_total", map[string]string{"function": "submit", "route": "POST /v1/chat/completions", "code": "200"}, 3},
		{"sluice_http_request_duration_seconds", map[string]string{"function": "submit"}, 4},
		{"sluice_inference_requests_total", map[string]string{"model": chat, "code": "200"}, 3},
		{"sluice_inference_request_duration_seconds", map[string]string{"model": chat}, 3},
		{"sluice_time_to_first_token_seconds", map[string]string{"model": chat}, 1},
		{"sluice_queue_wait_seconds", map[string]string{"model": chat}, 3},
		{"sluice_jobs_started_total", map[string]string{"model": chat, "outcome": "run"}, 3},
		{"sluice_jobs_completed_total", map[string]string{"model": chat, "status": "succeeded"}, 3},
		{"sluice_engine_request_duration_seconds", map[string]string{"model": chat}, 3},
		{"sluice_tokens_total", map[string]string{"model": chat, "type": "completion"}, 3},
		{"sluice_tokens_total", map[string]string{"model": chat, "type": "prompt"}, 3},
		{"sluice_usage_rows_total", map[string]string{"result": "written"}, 3},
		{"sluice_active_users", map[string]string{"window": "1h"}, 1},
		{"sluice_api_calls_per_user", map[string]string{"quantile": "1"}, 3},
		{"sluice_top_user_api_calls", map[string]string{"rank": "1"}, 3},
		{"sluice_recorded_requests", map[string]string{"model": chat}, 3},
		{"sluice_engine_endpoint_up", map[string]string{"model": chat}, 1},
		{"sluice_model_healthy_endpoints", map[string]string{"model": chat}, 1},
		{"sluice_model_workers", map[string]string{"model": chat}, 1},
		{"process_cpu_seconds_total", nil, 0.001},
	}
	for _, m := range moved {
		b, _ := value(before, m.name, m.labels)
		a, ok := value(after, m.name, m.labels)
		if !ok || a-b < m.min && !(m.name == "sluice_engine_endpoint_up" || strings.HasPrefix(m.name, "sluice_model_")) {
			t.Errorf("%s%v: before %v, after %v (present %v); want it to grow by %v", m.name, m.labels, b, a, ok, m.min)
		}
		if ok && a < m.min {
			t.Errorf("%s%v = %v, want at least %v", m.name, m.labels, a, m.min)
		}
	}
	if _, ok := value(after, "sluice_queue_depth", map[string]string{"model": chat, "priority": "0"}); !ok {
		t.Error("sluice_queue_depth missing")
	}
	for _, p := range []string{"/healthz", "/readyz", "/function/submit/metrics", "/function/submit/healthz",
		"/function/auth/readyz", "/function/usage-rollup/metrics", "/function/billing-webhook/healthz"} {
		resp, err := http.Get(s.base + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	t.Run("admin status", func(t *testing.T) {
		code, out := s.do(t, "GET", "/v1/admin/status", "")
		if code != 200 {
			t.Fatalf("admin: %d %v", code, out)
		}
		b, _ := json.Marshal(out)
		var st struct {
			Models []struct {
				Model            string `json:"model"`
				HealthyEndpoints int    `json:"healthy_endpoints"`
				Queues           []struct {
					Priority int   `json:"priority"`
					Depth    int64 `json:"depth"`
				} `json:"queues"`
				Workers []struct {
					Worker    string `json:"worker"`
					Endpoints []struct {
						URL      string `json:"url"`
						Healthy  bool   `json:"healthy"`
						Capacity int64  `json:"capacity"`
					} `json:"endpoints"`
				} `json:"workers"`
			} `json:"models"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Models) != 2 || st.Models[0].Model != chat || len(st.Models[0].Queues) != 4 { // three tier classes and the batch class
			t.Fatalf("status: %s", b)
		}
		m := st.Models[0]
		if m.HealthyEndpoints != 1 || len(m.Workers) != 1 || len(m.Workers[0].Endpoints) != 1 ||
			!m.Workers[0].Endpoints[0].Healthy || m.Workers[0].Endpoints[0].Capacity != 8+1 { // max_batch_size + dispatch.batch_margin
			t.Errorf("model status: %s", b)
		}
		user := s.newKey(t, testenv.Name("status-user")+"@example.com")
		code, out = s.do(t, "GET", "/v1/admin/status", "", "Authorization", "Bearer "+user)
		if code != 403 || out["error"] == nil {
			t.Errorf("a user's key: %d %v, want 403", code, out)
		}
	})
	t.Run("deploy files name only exported metrics", func(t *testing.T) {
		exported := map[string]bool{}
		for name, f := range after {
			exported[name] = true
			if f.GetType() == dto.MetricType_HISTOGRAM {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					exported[name+suf] = true
				}
			}
		}
		// Per-GPU series exist only on a worker that reads a GPU through
		// NVML, which this machine has not: take their names from the same
		// exporter fed one fake reading, so a typo in deploy/ still fails.
		for name := range gpuOnlyMetricNames(t) {
			exported[name] = true
		}
		used := deployMetricNames(t)
		if len(used) < 30 {
			t.Fatalf("only %d metric names found in deploy/; the parser is broken", len(used))
		}
		var missing []string
		for name, where := range used {
			if !exported[name] {
				missing = append(missing, name+" ("+where+")")
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("named in deploy/ but not exported:\n  %s", strings.Join(missing, "\n  "))
		}
	})
}

// gpuOnlyMetricNames returns the families a worker exports only when it
// sees a GPU, from a telemetry fed one fake reading.
func gpuOnlyMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	gather := func(src telemetry.GPUSource) map[string]bool {
		tel, err := telemetry.New(t.Context(), config.Telemetry{}, slog.New(slog.DiscardHandler), telemetry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		tel.GPUs(src)
		fams, err := tel.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, f := range fams {
			names[f.GetName()] = true
		}
		return names
	}
	without := gather(nil)
	out := gather(func(context.Context) ([]telemetry.GPUReading, error) {
		return []telemetry.GPUReading{{UUID: "GPU-fake", MemoryTotal: 1}}, nil
	})
	for name := range without {
		delete(out, name)
	}
	if len(out) == 0 {
		t.Fatal("a GPU reading added no metric families")
	}
	return out
}

// metricName matches the names of Sluice's and the client library's
// metrics inside a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:sluice|process|go)_[a-zA-Z0-9_]+`)

// deployMetricNames returns every metric named in the Grafana dashboards and
// the Prometheus rules, with the file that names it. Recording-rule outputs
// (sluice:...) are not metrics Sluice exports, and contain a colon.
func deployMetricNames(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join("..", "..", "deploy")
	out := map[string]string{}
	add := func(expr, file string) {
		for _, n := range metricName.FindAllString(expr, -1) {
			out[n] = file
		}
	}
	dash, _ := filepath.Glob(filepath.Join(root, "grafana", "*.json"))
	if len(dash) != 5 {
		t.Fatalf("want the design's five dashboards in deploy/grafana, found %d", len(dash))
	}
	for _, f := range dash {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(d.Panels) == 0 {
			t.Fatalf("%s: no panels", f)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				add(tg.Expr, filepath.Base(f))
			}
		}
	}
	rules, _ := filepath.Glob(filepath.Join(root, "prometheus", "*rules*.yml"))
	if len(rules) == 0 {
		t.Fatal("no rule files in deploy/prometheus")
	}
	exprLine := regexp.MustCompile(`(?m)^\s*expr:\s*(.*(?:\n\s{8,}.*)*)`)
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range exprLine.FindAllStringSubmatch(string(b), -1) {
			add(m[1], filepath.Base(f))
		}
	}
	return out
}
