package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Telemetry configures metrics, traces and the operator's business figures.
type Telemetry struct {
	// MetricsOff turns Prometheus metrics off (no /metrics, no per-request
	// observations); default false: metrics are on.
	MetricsOff bool `yaml:"metrics_off"`
	// Tracing configures OpenTelemetry traces; off by default.
	Tracing Tracing `yaml:"tracing"`
	// BusinessRefresh is how often the business gauges (active users, calls
	// per user, revenue) are recomputed from PostgreSQL; default 60s.
	BusinessRefresh time.Duration `yaml:"business_refresh"`
	// TopUsers is how many ranks the top-N per-user gauges export; default 10.
	TopUsers int `yaml:"top_users"`
	// StatusTTL is how long an endpoint's published health and load stays
	// visible after its worker last wrote it; default 15s.
	StatusTTL time.Duration `yaml:"status_ttl"`
}

// Tracing configures the OTLP trace exporter.
type Tracing struct {
	// Enabled switches tracing on; default false (no spans, no cost).
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/HTTP base URL (Jaeger: http://jaeger:4318);
	// default http://127.0.0.1:4318.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the fraction of new traces kept (parent-based); default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName names this process in traces; default "sluice".
	ServiceName string `yaml:"service_name"`
}

func (c *Config) applyTelemetryDefaults() {
	t := &c.Telemetry
	def(&t.BusinessRefresh, time.Minute)
	def(&t.TopUsers, 10)
	def(&t.StatusTTL, 15*time.Second)
	def(&t.Tracing.Endpoint, "http://127.0.0.1:4318")
	def(&t.Tracing.SampleRatio, 1.0)
	def(&t.Tracing.ServiceName, "sluice")
	def(&c.Worker.Listen, ":9464")
}

func (c *Config) validateTelemetry() []error {
	var errs []error
	t := c.Telemetry
	if t.Tracing.SampleRatio < 0 || t.Tracing.SampleRatio > 1 {
		errs = append(errs, errors.New("telemetry.tracing.sample_ratio: must be between 0 and 1"))
	}
	if u, err := url.Parse(t.Tracing.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("telemetry.tracing.endpoint: %q is not an http(s) URL", t.Tracing.Endpoint))
	}
	if t.TopUsers < 0 || t.TopUsers > 100 {
		errs = append(errs, errors.New("telemetry.top_users: must be between 0 and 100 (each rank is a series)"))
	}
	return errs
}
