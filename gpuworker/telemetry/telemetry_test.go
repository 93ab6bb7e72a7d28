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
