// Command gpuprobe prints one telemetry reading per GPU as JSON (the numbers
// the worker exports), or with -metrics the sluice_gpu_* lines the worker's
// /metrics serves from them. Without an NVIDIA driver it prints [] (or
// sluice_gpu_devices 0) and exits 0.
//
//	go run ./gpuworker/cmd/gpuprobe [-metrics]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/common/expfmt"

	"github.com/sluice-ai/sluice/gpuworker/telemetry"
	"github.com/sluice-ai/sluice/shared/config"
	metrics "github.com/sluice-ai/sluice/shared/telemetry"
)

func main() {
	asMetrics := flag.Bool("metrics", false, "print the worker's sluice_gpu_* metrics instead of JSON")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	t := telemetry.Open(log)
	defer t.Close()
	if *asMetrics {
		if err := printMetrics(log, t); err != nil {
			fmt.Fprintln(os.Stderr, "gpuprobe:", err)
			os.Exit(1)
		}
		return
	}
	gpus, err := t.Read(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpuprobe:", err)
	}
	if gpus == nil {
		gpus = []telemetry.GPU{}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(gpus) //nolint:errcheck
	if err != nil {
		os.Exit(1)
	}
}

// printMetrics gathers through the same registry and source the worker
// uses and prints the GPU families in the exposition format.
func printMetrics(log *slog.Logger, t telemetry.Telemetry) error {
	reg, err := metrics.New(context.Background(), config.Telemetry{}, log, metrics.Options{})
	if err != nil {
		return err
	}
	reg.GPUs(telemetry.Source(t))
	fams, err := reg.Registry.Gather()
	if err != nil {
		return err
	}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "sluice_gpu_") {
			if _, err := expfmt.MetricFamilyToText(os.Stdout, f); err != nil {
				return err
			}
		}
	}
	return nil
}
