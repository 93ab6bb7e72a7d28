// Package wait has the names the simulator's test helper uses.
package wait

import "time"

// Strategy is a readiness check.
type Strategy interface{ strategy() }

// HTTPStrategy is an HTTP readiness check.
type HTTPStrategy struct{}

func (*HTTPStrategy) strategy() {}

// ForHTTP returns a check.
func ForHTTP(string) *HTTPStrategy { return &HTTPStrategy{} }

// WithPort is ignored.
func (s *HTTPStrategy) WithPort(string) *HTTPStrategy { return s }

// WithStartupTimeout is ignored.
func (s *HTTPStrategy) WithStartupTimeout(time.Duration) *HTTPStrategy { return s }
