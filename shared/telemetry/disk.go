package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// diskCollector exports the process's disk I/O from /proc/self/io, which
// the standard process collector leaves out. On systems without /proc it
// exports nothing.
type diskCollector struct{}

var (
	diskRead = prometheus.NewDesc("sluice_process_disk_read_bytes_total",
		"Bytes this process caused to be read from storage.", nil, nil)
	diskWritten = prometheus.NewDesc("sluice_process_disk_written_bytes_total",
		"Bytes this process caused to be written to storage.", nil, nil)
)

func (diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- diskRead
	ch <- diskWritten
}

func (diskCollector) Collect(ch chan<- prometheus.Metric) {
	p, err := procfs.Self()
	if err != nil {
		return
	}
	io, err := p.IO()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(diskRead, prometheus.CounterValue, float64(io.ReadBytes))
	ch <- prometheus.MustNewConstMetric(diskWritten, prometheus.CounterValue, float64(io.WriteBytes))
}
