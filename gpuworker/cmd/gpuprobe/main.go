// Command gpuprobe prints one telemetry reading per GPU as JSON (the numbers
// the worker exports). Without an NVIDIA driver it prints [] and exits 0.
//
//	go run ./gpuworker/cmd/gpuprobe
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/sluice-ai/sluice/gpuworker/telemetry"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	t := telemetry.Open(log)
	defer t.Close()
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
