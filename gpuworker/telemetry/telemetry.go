// Package telemetry reads per-GPU utilisation, memory, temperature and power
// through NVML (github.com/NVIDIA/go-nvml, cgo; the library is loaded at run
// time; a build without cgo has none). A machine without the NVIDIA driver has no GPU telemetry: Open logs
// one line and returns a Telemetry that reports nothing, never an error.
package telemetry

import "context"

// GPU is one device's reading.
type GPU struct {
	Index          int     `json:"index"`
	UUID           string  `json:"uuid"`
	Name           string  `json:"name"`
	UtilizationPct float64 `json:"utilization_pct"`     // GPU busy, 0..100
	MemUtilPct     float64 `json:"memory_util_pct"`     // memory controller busy, 0..100
	MemoryUsed     uint64  `json:"memory_used_bytes"`   //
	MemoryTotal    uint64  `json:"memory_total_bytes"`  //
	TemperatureC   float64 `json:"temperature_celsius"` //
	PowerWatts     float64 `json:"power_watts"`         //
}

// Telemetry is what a metrics exporter registers: a reading per GPU on
// demand. Implementations are safe for concurrent use.
type Telemetry interface {
	// Read returns one reading per GPU; none where there is no driver.
	Read(ctx context.Context) ([]GPU, error)
	// Close releases the driver.
	Close() error
}

// none is the Telemetry of a machine without GPUs.
type none struct{}

func (none) Read(context.Context) ([]GPU, error) { return nil, nil }
func (none) Close() error                        { return nil }
