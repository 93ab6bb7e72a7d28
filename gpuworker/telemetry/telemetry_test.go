package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/sluice-ai/sluice/gpuworker/telemetry"
)

// TestNoDriverIsNotAFailure: on a machine without the NVIDIA driver (this
// one), Open logs one line and reads no GPUs without error. On a GPU machine
// it reads at least one device.
func TestNoDriverIsNotAFailure(t *testing.T) {
	var buf bytes.Buffer
	tel := telemetry.Open(slog.New(slog.NewTextHandler(&buf, nil)))
	defer tel.Close()
	gpus, err := tel.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 && bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("want one log line without a driver, got %q", buf.String())
	}
	for _, g := range gpus {
		if g.MemoryTotal == 0 {
			t.Errorf("GPU %d: no memory total", g.Index)
		}
	}
}

// fixed is a Telemetry that returns set readings.
type fixed []telemetry.GPU

func (f fixed) Read(context.Context) ([]telemetry.GPU, error) { return f, nil }
func (fixed) Close() error                                    { return nil }

// TestSourceConvertsUnits: the metrics get utilisation as a 0..1 ratio and
// every other reading unchanged.
func TestSourceConvertsUnits(t *testing.T) {
	t.Parallel()
	got, err := telemetry.Source(fixed{{Index: 3, UUID: "GPU-x", Name: "H100", UtilizationPct: 87, MemoryUsed: 5, MemoryTotal: 80,
		TemperatureC: 55, PowerWatts: 301.25}})(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("%v, %v", got, err)
	}
	g := got[0]
	if g.Index != 3 || g.UUID != "GPU-x" || g.Utilization != 0.87 || g.MemoryUsed != 5 || g.MemoryTotal != 80 ||
		g.TemperatureC != 55 || g.PowerWatts != 301.25 {
		t.Errorf("converted: %+v", g)
	}
}
