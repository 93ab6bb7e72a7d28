package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
)

// TestAdaptersFromSimulator: the simulator lists the adapters it was
// started with (--lora-modules) and those loaded since
// (/v1/load_lora_adapter) with their parent, and not its base model.
func TestAdaptersFromSimulator(t *testing.T) {
	t.Parallel()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), "lora-7b", 128, 4, "", "--max-loras", "2",
		"--lora-modules", `{"name":"sql","path":"/a/sql","base_model_name":"lora-7b"}`)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	ctx := context.Background()
	got, err := c.Adapters(ctx, time.Second)
	if err != nil || len(got) != 1 || !got["sql"] {
		t.Fatalf("adapters %v, %v: want sql only", got, err)
	}
	if err := c.LoadAdapter(ctx, "chat", "/a/chat", time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err = c.Adapters(ctx, time.Second); err != nil || len(got) != 2 || !got["sql"] || !got["chat"] {
		t.Fatalf("after the load: %v, %v", got, err)
	}
}
