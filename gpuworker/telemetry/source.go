package telemetry

import (
	"context"

	"github.com/sluice-ai/sluice/shared/telemetry"
)

// Source adapts t to what the worker's /metrics reads at each scrape
// (shared/telemetry's GPU gauges): percentages become 0..1 ratios.
func Source(t Telemetry) telemetry.GPUSource {
	return func(ctx context.Context) ([]telemetry.GPUReading, error) {
		gpus, err := t.Read(ctx)
		out := make([]telemetry.GPUReading, len(gpus))
		for i, g := range gpus {
			out[i] = telemetry.GPUReading{Index: g.Index, UUID: g.UUID, Utilization: g.UtilizationPct / 100,
				MemoryUsed: g.MemoryUsed, MemoryTotal: g.MemoryTotal, TemperatureC: g.TemperatureC, PowerWatts: g.PowerWatts}
		}
		return out, err
	}
}
