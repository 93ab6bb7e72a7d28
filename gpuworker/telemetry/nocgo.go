//go:build !cgo

package telemetry

import "log/slog"

// Open, in a build without cgo, cannot reach NVML: it logs once and returns
// a Telemetry with no GPUs. Build the worker with CGO_ENABLED=1 for GPU
// metrics.
func Open(log *slog.Logger) Telemetry {
	log.Info("no GPU telemetry: built without cgo")
	return none{}
}
