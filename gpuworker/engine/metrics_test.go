package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
)

// TestMetricsFromSimulator reads load from the simulator's real /metrics,
// KV-cache use included (--fake-metrics: the simulator reports KV use
// otherwise only with --enable-kvcache, which needs the network).
func TestMetricsFromSimulator(t *testing.T) {
	t.Parallel()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), "met-7b", 128, 8, "",
		"--fake-metrics", `{"running-requests":3,"waiting-requests":2,"kv-cache-usage":0.97}`)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	ctx := context.Background()
	var l engine.Load
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) { // fake metrics appear on the first refresh
		if l, err = c.Metrics(ctx, engine.KindVLLM, time.Second); err == nil && l.Running == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || l.Running != 3 || l.Waiting != 2 || l.KVCache < 0.969 || l.KVCache > 0.971 {
		t.Fatalf("load: %+v %v", l, err)
	}
	if !c.Ready(ctx, time.Second) {
		t.Fatal("a started simulator is ready")
	}
	// An engine kind without load metrics reports Unknown, not an error.
	if l, err := c.Metrics(ctx, engine.KindOllama, time.Second); err != nil || l != engine.Unknown {
		t.Fatalf("ollama: %+v %v", l, err)
	}
}

// TestReadyWaitsForWeights: /health/ready answers 503 while the engine loads.
func TestReadyWaitsForWeights(t *testing.T) {
	t.Parallel()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), "load-7b", 128, 8, "", "--startup-duration", "3s")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	ctx := context.Background()
	if c.Ready(ctx, time.Second) {
		t.Fatal("ready while loading weights")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !c.Ready(ctx, time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	in := `# HELP vllm:num_requests_running x
vllm:num_requests_running{model_name="a"} 3
vllm:num_requests_running{model_name="b}\"x"} 2
vllm:gpu_cache_usage_perc{model_name="a"} 0.5 1700000000
tgi_queue_size 7
broken{ 1
nan_value NaN
`
	m := engine.ParseMetrics(strings.NewReader(in))
	if m["vllm:num_requests_running"] != 5 || m["vllm:gpu_cache_usage_perc"] != 0.5 || m["tgi_queue_size"] != 7 {
		t.Fatalf("%v", m)
	}
	if _, ok := m["broken"]; ok {
		t.Fatal("malformed line parsed")
	}
}

func FuzzParseMetrics(f *testing.F) {
	f.Add("vllm:num_requests_running{model_name=\"a\"} 3\n")
	f.Add("a{b=\"}\\\"\"} 1e3 123\n# x\n")
	f.Fuzz(func(t *testing.T, s string) {
		engine.ParseMetrics(strings.NewReader(s))
	})
}
