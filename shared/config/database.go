package config

import (
	"errors"
	"time"
)

// Database configures how PostgreSQL is used beyond its URLs (DATABASE_URL,
// DATABASE_READ_URL in Env): when the read replica serves the report reads.
type Database struct {
	// ReadMaxLag is how far behind the primary the read replica may be and
	// still serve the report reads (usage, statements, invoices, revenue,
	// business metrics); past it they go to the primary until it catches
	// up. Default 5s.
	ReadMaxLag time.Duration `yaml:"read_max_lag"`
	// ReadCheckInterval is how long one check of the replica's health and
	// lag is trusted before the next report read checks again; default 1s.
	// A read that fails on the replica marks it down at once.
	ReadCheckInterval time.Duration `yaml:"read_check_interval"`
	// ReadCheckTimeout bounds one check (and so the delay a dead replica
	// adds to a report read before it goes to the primary); default 1s.
	ReadCheckTimeout time.Duration `yaml:"read_check_timeout"`
}

func (d *Database) applyDefaults() {
	def(&d.ReadMaxLag, 5*time.Second)
	def(&d.ReadCheckInterval, time.Second)
	def(&d.ReadCheckTimeout, time.Second)
}

func (d *Database) validate() error {
	var errs []error
	if d.ReadMaxLag < 0 {
		errs = append(errs, errors.New("database.read_max_lag: must not be negative"))
	}
	if d.ReadCheckInterval < 0 {
		errs = append(errs, errors.New("database.read_check_interval: must not be negative"))
	}
	if d.ReadCheckTimeout < 10*time.Millisecond {
		errs = append(errs, errors.New("database.read_check_timeout: want at least 10ms"))
	}
	return errors.Join(errs...)
}
