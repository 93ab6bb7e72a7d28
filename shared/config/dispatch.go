package config

import (
	"errors"
	"time"
)

// Dispatch tunes how the GPU worker fills each engine's batch.
type Dispatch struct {
	// BatchMargin is how many requests beyond max_batch_size the worker keeps
	// in flight per endpoint, to hide the gap between one job finishing and
	// the next arriving (measured in docs/BENCHMARKS.md). Unset means 1; 0
	// keeps exactly max_batch_size.
	BatchMargin *int `yaml:"batch_margin"`
	// MetricsInterval is how often each endpoint's /metrics is read; default
	// 250ms. Negative turns metrics-driven throttling off.
	MetricsInterval time.Duration `yaml:"metrics_interval"`
	// KVCacheHigh is the KV-cache use (0..1) above which no more is sent to an
	// endpoint until it falls; default 0.95.
	KVCacheHigh float64 `yaml:"kv_cache_high"`
	// HealthInterval is how often each endpoint's /health is polled; default 1s.
	HealthInterval time.Duration `yaml:"health_interval"`
	// HealthFailures is how many failed polls in a row take an endpoint out
	// (its in-flight jobs are retried elsewhere); default 2. A refused
	// connection takes it out at once.
	HealthFailures int `yaml:"health_failures"`
}

// Margin returns the batch margin in force.
func (d Dispatch) Margin() int {
	if d.BatchMargin == nil {
		return 1
	}
	return *d.BatchMargin
}

func (c *Config) applyDispatchDefaults() {
	d := &c.Dispatch
	def(&d.MetricsInterval, 250*time.Millisecond)
	def(&d.KVCacheHigh, 0.95)
	def(&d.HealthInterval, time.Second)
	def(&d.HealthFailures, 2)
}

func (c *Config) validateDispatch() error {
	var errs []error
	d := c.Dispatch
	if d.Margin() < 0 || d.Margin() > 1024 {
		errs = append(errs, errors.New("dispatch.batch_margin: must be 0..1024"))
	}
	if d.KVCacheHigh <= 0 || d.KVCacheHigh > 1 {
		errs = append(errs, errors.New("dispatch.kv_cache_high: must be in (0, 1]"))
	}
	if d.HealthInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("dispatch.health_interval: must be at least 10ms"))
	}
	if d.HealthFailures < 1 {
		errs = append(errs, errors.New("dispatch.health_failures: must be at least 1"))
	}
	return errors.Join(errs...)
}
