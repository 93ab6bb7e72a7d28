package telemetry

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GPUReading is one device's reading as the metrics export it. The worker
// adapts its NVML readings to this, so this package needs no cgo.
type GPUReading struct {
	Index        int
	UUID         string
	Utilization  float64 // GPU busy, 0..1
	MemoryUsed   uint64  // bytes
	MemoryTotal  uint64  // bytes
	TemperatureC float64
	PowerWatts   float64
}

// GPUSource reads every GPU at scrape time. On error it may still return
// the devices it could read; a device it cannot read is left out (so
// sluice_gpu_devices drops and the GPU-gone alert fires).
type GPUSource func(ctx context.Context) ([]GPUReading, error)

// gpuCollector exports the GPUs of the source set with Telemetry.GPUs;
// without one (no driver, or a process that is not a worker) only
// sluice_gpu_devices 0.
type gpuCollector struct {
	src atomic.Pointer[GPUSource]
	log *slog.Logger
}

var (
	gpuDevicesDesc = prometheus.NewDesc("sluice_gpu_devices",
		"GPUs the worker reads through NVML (0 without a driver, and in processes that are not workers).", nil, nil)
	gpuLabels   = []string{"gpu", "uuid"}
	gpuUtilDesc = prometheus.NewDesc("sluice_gpu_utilization_ratio",
		"Fraction of the last sample period a kernel ran on the GPU (NVML utilisation), 0..1.", gpuLabels, nil)
	gpuMemUsedDesc  = prometheus.NewDesc("sluice_gpu_memory_used_bytes", "GPU memory allocated.", gpuLabels, nil)
	gpuMemTotalDesc = prometheus.NewDesc("sluice_gpu_memory_total_bytes", "GPU memory installed.", gpuLabels, nil)
	gpuTempDesc     = prometheus.NewDesc("sluice_gpu_temperature_celsius", "GPU core temperature.", gpuLabels, nil)
	gpuPowerDesc    = prometheus.NewDesc("sluice_gpu_power_watts", "GPU power draw.", gpuLabels, nil)
)

// Describe implements prometheus.Collector.
func (c *gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gpuDevicesDesc, gpuUtilDesc, gpuMemUsedDesc, gpuMemTotalDesc, gpuTempDesc, gpuPowerDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *gpuCollector) Collect(ch chan<- prometheus.Metric) {
	var gpus []GPUReading
	if src := c.src.Load(); src != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		if gpus, err = (*src)(ctx); err != nil {
			c.log.WarnContext(ctx, "GPU telemetry read failed", slog.Int("read", len(gpus)), slog.String("err", err.Error()))
		}
	}
	ch <- prometheus.MustNewConstMetric(gpuDevicesDesc, prometheus.GaugeValue, float64(len(gpus)))
	for _, g := range gpus {
		l := []string{strconv.Itoa(g.Index), g.UUID}
		ch <- prometheus.MustNewConstMetric(gpuUtilDesc, prometheus.GaugeValue, g.Utilization, l...)
		ch <- prometheus.MustNewConstMetric(gpuMemUsedDesc, prometheus.GaugeValue, float64(g.MemoryUsed), l...)
		ch <- prometheus.MustNewConstMetric(gpuMemTotalDesc, prometheus.GaugeValue, float64(g.MemoryTotal), l...)
		ch <- prometheus.MustNewConstMetric(gpuTempDesc, prometheus.GaugeValue, g.TemperatureC, l...)
		ch <- prometheus.MustNewConstMetric(gpuPowerDesc, prometheus.GaugeValue, g.PowerWatts, l...)
	}
}

// GPUs makes /metrics read the GPUs from src at each scrape (the worker
// passes its NVML telemetry); nil exports no GPUs. A no-op with metrics off.
func (t *Telemetry) GPUs(src GPUSource) {
	if t == nil || t.gpu == nil {
		return
	}
	if src == nil {
		t.gpu.src.Store(nil)
		return
	}
	t.gpu.src.Store(&src)
}
