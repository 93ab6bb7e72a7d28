package config

import "errors"

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
}

func (c *Config) applyBatchDefaults() {
	def(&c.Batch.MaxFileBytes, 200<<20)
	def(&c.Batch.MaxLines, 50000)
	def(&c.Batch.LinesPerMinute, 10000)
	def(&c.Batch.LinesInFlight, 1000)
	def(&c.Batch.MaxSlotShare, 0.5)
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
	return errors.Join(errs...)
}
