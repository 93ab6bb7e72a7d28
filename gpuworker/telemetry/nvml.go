//go:build cgo

package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Open initialises NVML. Without a driver it logs once and returns a
// Telemetry with no GPUs.
func Open(log *slog.Logger) Telemetry {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		log.Info("no GPU telemetry: NVML unavailable", slog.String("reason", nvml.ErrorString(ret)))
		return none{}
	}
	return &nvmlTelemetry{}
}

// nvmlTelemetry reads through the NVIDIA driver.
type nvmlTelemetry struct {
	mu sync.Mutex
}

func (t *nvmlTelemetry) Read(ctx context.Context) ([]GPU, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml: device count: %s", nvml.ErrorString(ret))
	}
	out := make([]GPU, 0, n)
	var errs []error
	for i := range n {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			errs = append(errs, fmt.Errorf("nvml: device %d: %s", i, nvml.ErrorString(ret)))
			continue
		}
		g := GPU{Index: i}
		// A reading a device does not support stays zero: one missing
		// sensor must not hide the others.
		g.UUID, _ = d.GetUUID()
		g.Name, _ = d.GetName()
		if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
			g.UtilizationPct, g.MemUtilPct = float64(u.Gpu), float64(u.Memory)
		}
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryUsed, g.MemoryTotal = m.Used, m.Total
		}
		if c, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
			g.TemperatureC = float64(c)
		}
		if mw, ret := d.GetPowerUsage(); ret == nvml.SUCCESS {
			g.PowerWatts = float64(mw) / 1000
		}
		out = append(out, g)
	}
	return out, errors.Join(errs...)
}

func (t *nvmlTelemetry) Close() error {
	if ret := nvml.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml: shutdown: %s", nvml.ErrorString(ret))
	}
	return nil
}
