package config

import (
	"fmt"
	"net/url"
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
}

func (s *Storage) validate() error {
	if s.Endpoint != "" {
		u, err := url.Parse(s.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("storage.endpoint %q: want an http(s) URL", s.Endpoint)
		}
	}
	return nil
}
