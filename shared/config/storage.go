package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Storage is the S3-compatible object store (the design's MinIO): database
// backups and model artifacts. Credentials come from the environment
// (SLUICE_S3_ACCESS_KEY / SLUICE_S3_SECRET_KEY or their secret files).
type Storage struct {
	// Endpoint is the S3 API base URL, e.g. http://minio:9000; empty means
	// AWS S3 itself.
	Endpoint string `yaml:"endpoint"`
	// Region is the signing region; default us-east-1 (what MinIO expects).
	Region string `yaml:"region"`
	// Bucket holds every object Sluice writes; default "sluice".
	Bucket string `yaml:"bucket"`
	// BackupPrefix is where database backups go; default "backups/postgres/".
	BackupPrefix string `yaml:"backup_prefix"`
	// ModelPrefix is where model artifacts and manifests go; default "models/".
	ModelPrefix string `yaml:"model_prefix"`
	// VirtualHostStyle addresses buckets as subdomains (AWS's default);
	// false (the default) uses path style, which MinIO needs.
	VirtualHostStyle bool `yaml:"virtual_host_style"`
	// Jobs keeps large job results and async job inputs in the bucket
	// instead of Redis.
	Jobs JobStorage `yaml:"jobs"`
}

// JobStorage moves large job payloads out of Redis: a result or async input
// over its threshold is written to the bucket and the job's Redis record
// keeps only the object's key.
type JobStorage struct {
	// Enabled turns it on; default false (every payload stays in Redis, as
	// the local stack needs no object store). Compose turns it on for MinIO.
	Enabled bool `yaml:"enabled"`
	// ResultThresholdBytes: a non-streamed result larger than this goes to
	// the bucket; default 262144 (256 KiB).
	ResultThresholdBytes int64 `yaml:"result_threshold_bytes"`
	// InputThresholdBytes: an async job's request body larger than this goes
	// to the bucket; default 262144 (256 KiB).
	InputThresholdBytes int64 `yaml:"input_threshold_bytes"`
	// Prefix is where job objects go, as <prefix><user id>/<job id>/...;
	// default "jobs/".
	Prefix string `yaml:"prefix"`
	// Retention is how long a job object is kept before the worker's sweeper
	// deletes it; default jobs.result_ttl + jobs.async_deadline + 1h, so an
	// object outlives the Redis record that points at it.
	Retention time.Duration `yaml:"retention"`
	// SweepInterval is how often the sweeper runs; default 10m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

func (s *Storage) applyDefaults() {
	if s.Region == "" {
		s.Region = "us-east-1"
	}
	if s.Bucket == "" {
		s.Bucket = "sluice"
	}
	if s.BackupPrefix == "" {
		s.BackupPrefix = "backups/postgres/"
	}
	if s.ModelPrefix == "" {
		s.ModelPrefix = "models/"
	}
	j := &s.Jobs
	def(&j.ResultThresholdBytes, 256<<10)
	def(&j.InputThresholdBytes, 256<<10)
	def(&j.Prefix, "jobs/")
	def(&j.SweepInterval, 10*time.Minute)
}

func (s *Storage) validate() error {
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("storage.endpoint %q: want an http(s) URL", s.Endpoint)
		}
	}
	j := s.Jobs
	if j.ResultThresholdBytes < 0 || j.InputThresholdBytes < 0 {
		return fmt.Errorf("storage.jobs: thresholds must not be negative")
	}
	if j.Prefix == "" || !strings.HasSuffix(j.Prefix, "/") || strings.HasPrefix(j.Prefix, "/") ||
		j.Prefix == s.BackupPrefix || j.Prefix == s.ModelPrefix {
		return fmt.Errorf("storage.jobs.prefix %q: want a relative folder ending in / apart from the backup and model prefixes", j.Prefix)
	}
	if j.Retention < 0 || j.SweepInterval < 0 {
		return fmt.Errorf("storage.jobs: retention and sweep_interval must not be negative")
	}
	return nil
}
