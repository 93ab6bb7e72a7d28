package config

import (
	"errors"
	"time"
)

// Batch sets the Files and Batch APIs' limits (/v1/files, /v1/batches).
// Batch lines are the lowest class of work: they have their own limits,
// separate from a tier's interactive rpm/tpm/concurrency.
type Batch struct {
	// MaxFileBytes bounds one uploaded file; default 200 MB (OpenAI's
	// limit for a batch input file).
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxLines bounds the requests in one batch input file; default 50,000.
	MaxLines int `yaml:"max_lines"`
	// LinesPerMinute bounds the lines a user's batches start per minute;
	// default 10,000.
	LinesPerMinute int `yaml:"lines_per_minute"`
	// LinesInFlight bounds a user's batch lines queued or running at once;
	// default 1,000.
	LinesInFlight int `yaml:"lines_in_flight"`
	// MaxSlotShare is the share of each endpoint's slots (max_batch_size)
	// that batch-class work (batch lines, flex jobs) may hold while
	// interactive jobs wait; default 0.5. With no interactive work waiting
	// it may fill every slot.
	MaxSlotShare float64 `yaml:"max_slot_share"`
	// FilesDir keeps uploaded files and batch outputs on local disk in this
	// folder instead of the object store; empty (the default) uses the
	// storage bucket under FilesPrefix. `sluice dev` sets it to
	// <state dir>/files when no storage.endpoint is configured, so the
	// quick start needs no MinIO.
	FilesDir string `yaml:"files_dir"`
	// FilesPrefix is the bucket prefix of files; default "files/".
	FilesPrefix string `yaml:"files_prefix"`
	// DriverLease is how long a batch driver's claim on a batch lasts
	// without renewal (it renews at a third of it); a driver that dies
	// leaves the batch to another after this long. Default 30s.
	DriverLease time.Duration `yaml:"driver_lease"`
	// DriverBatches is how many batches one driver (worker process) works
	// at once; default 4.
	DriverBatches int `yaml:"driver_batches"`
}

func (c *Config) applyBatchDefaults() {
	def(&c.Batch.MaxFileBytes, 200<<20)
	def(&c.Batch.MaxLines, 50000)
	def(&c.Batch.LinesPerMinute, 10000)
	def(&c.Batch.LinesInFlight, 1000)
	def(&c.Batch.MaxSlotShare, 0.5)
	def(&c.Batch.FilesPrefix, "files/")
	def(&c.Batch.DriverLease, 30*time.Second)
	def(&c.Batch.DriverBatches, 4)
}

func (c *Config) validateBatch() error {
	var errs []error
	b := c.Batch
	if b.MaxFileBytes < 1 {
		errs = append(errs, errors.New("batch.max_file_bytes: must be positive"))
	}
	if b.MaxLines < 1 || b.LinesPerMinute < 1 || b.LinesInFlight < 1 {
		errs = append(errs, errors.New("batch.max_lines, lines_per_minute, lines_in_flight: must be positive"))
	}
	if b.MaxSlotShare <= 0 || b.MaxSlotShare > 1 {
		errs = append(errs, errors.New("batch.max_slot_share: must be in (0, 1]"))
	}
	if b.DriverLease < time.Second || b.DriverBatches < 1 {
		errs = append(errs, errors.New("batch.driver_lease: at least 1s; batch.driver_batches: positive"))
	}
	return errors.Join(errs...)
}
