package telemetry_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// gpuNames are the per-GPU families; sluice_gpu_devices is always there.
var gpuNames = []string{"sluice_gpu_devices", "sluice_gpu_utilization_ratio", "sluice_gpu_memory_used_bytes",
	"sluice_gpu_memory_total_bytes", "sluice_gpu_temperature_celsius", "sluice_gpu_power_watts"}

// TestGPUMetrics: a worker's GPU readings are exported per device, labelled
// by index and uuid only, read at each scrape; a failed read exports the
// devices it could read, so the device count drops.
func TestGPUMetrics(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.New(context.Background(), config.Telemetry{}, discard, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gpus := []telemetry.GPUReading{
		{Index: 0, UUID: "GPU-aaaa", Utilization: 0.75, MemoryUsed: 40 << 30, MemoryTotal: 80 << 30, TemperatureC: 61, PowerWatts: 312.5},
		{Index: 1, UUID: "GPU-bbbb", Utilization: 0, MemoryUsed: 1 << 20, MemoryTotal: 80 << 30, TemperatureC: 33, PowerWatts: 70},
	}
	var readErr error
	tel.GPUs(func(context.Context) ([]telemetry.GPUReading, error) { return gpus, readErr })
	want := `
# HELP sluice_gpu_devices GPUs the worker reads through NVML (0 without a driver, and in processes that are not workers).
# TYPE sluice_gpu_devices gauge
sluice_gpu_devices 2
# HELP sluice_gpu_memory_total_bytes GPU memory installed.
# TYPE sluice_gpu_memory_total_bytes gauge
sluice_gpu_memory_total_bytes{gpu="0",uuid="GPU-aaaa"} 8.589934592e+10
sluice_gpu_memory_total_bytes{gpu="1",uuid="GPU-bbbb"} 8.589934592e+10
# HELP sluice_gpu_memory_used_bytes GPU memory allocated.
# TYPE sluice_gpu_memory_used_bytes gauge
sluice_gpu_memory_used_bytes{gpu="0",uuid="GPU-aaaa"} 4.294967296e+10
sluice_gpu_memory_used_bytes{gpu="1",uuid="GPU-bbbb"} 1.048576e+06
# HELP sluice_gpu_power_watts GPU power draw.
# TYPE sluice_gpu_power_watts gauge
sluice_gpu_power_watts{gpu="0",uuid="GPU-aaaa"} 312.5
sluice_gpu_power_watts{gpu="1",uuid="GPU-bbbb"} 70
# HELP sluice_gpu_temperature_celsius GPU core temperature.
# TYPE sluice_gpu_temperature_celsius gauge
sluice_gpu_temperature_celsius{gpu="0",uuid="GPU-aaaa"} 61
sluice_gpu_temperature_celsius{gpu="1",uuid="GPU-bbbb"} 33
# HELP sluice_gpu_utilization_ratio Fraction of the last sample period a kernel ran on the GPU (NVML utilisation), 0..1.
# TYPE sluice_gpu_utilization_ratio gauge
sluice_gpu_utilization_ratio{gpu="0",uuid="GPU-aaaa"} 0.75
sluice_gpu_utilization_ratio{gpu="1",uuid="GPU-bbbb"} 0
`
	if err := testutil.GatherAndCompare(tel.Registry, strings.NewReader(want), gpuNames...); err != nil {
		t.Error(err)
	}

	// Read at scrape time: a later reading shows without anything pushed.
	gpus[0].Utilization = 0.5
	if got := gpuGauge(t, tel, "sluice_gpu_utilization_ratio", "0"); got != 0.5 {
		t.Errorf("utilisation after a change: %v, want 0.5", got)
	}

	// One device fails: the other is still exported and the count drops.
	gpus, readErr = gpus[1:], errors.New("nvml: device 0: GPU is lost")
	if n, err := testutil.GatherAndCount(tel.Registry, "sluice_gpu_power_watts"); err != nil || n != 1 {
		t.Errorf("power series with one device lost: %d, %v; want 1", n, err)
	}
	if err := testutil.GatherAndCompare(tel.Registry, strings.NewReader(`
# HELP sluice_gpu_devices GPUs the worker reads through NVML (0 without a driver, and in processes that are not workers).
# TYPE sluice_gpu_devices gauge
sluice_gpu_devices 1
`), "sluice_gpu_devices"); err != nil {
		t.Error(err)
	}
}

// TestNoGPUs: without a source (no driver, or not a worker) the process
// exports sluice_gpu_devices 0 and no per-GPU series.
func TestNoGPUs(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(*telemetry.Telemetry){
		"no source": func(*telemetry.Telemetry) {},
		"empty source": func(tel *telemetry.Telemetry) {
			tel.GPUs(func(context.Context) ([]telemetry.GPUReading, error) { return nil, nil })
		},
	} {
		tel, err := telemetry.New(context.Background(), config.Telemetry{}, discard, telemetry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		set(tel)
		n, err := testutil.GatherAndCount(tel.Registry, gpuNames...)
		if err != nil || n != 1 {
			t.Errorf("%s: %d GPU series, %v; want only sluice_gpu_devices", name, n, err)
		}
		if err := testutil.GatherAndCompare(tel.Registry, strings.NewReader(`
# HELP sluice_gpu_devices GPUs the worker reads through NVML (0 without a driver, and in processes that are not workers).
# TYPE sluice_gpu_devices gauge
sluice_gpu_devices 0
`), "sluice_gpu_devices"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var off *telemetry.Telemetry
	off.GPUs(nil) // metrics off: accepted, does nothing
}

// gpuGauge gathers one GPU's value of a family.
func gpuGauge(t *testing.T, tel *telemetry.Telemetry, name, gpu string) float64 {
	t.Helper()
	fams, err := tel.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "gpu" && l.GetValue() == gpu {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{gpu=%q} not exported", name, gpu)
	return 0
}
