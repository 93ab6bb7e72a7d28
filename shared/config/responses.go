package config

import (
	"errors"
	"time"
)

// Responses configures the Responses API (POST /v1/responses): Sluice keeps
// stored responses itself, per user, in PostgreSQL.
type Responses struct {
	// StoreTTL is how long a stored response (store: true, OpenAI's
	// default) is kept: after it GET answers 404, previous_response_id
	// refuses it, and the usage-rollup's scheduled run deletes it. Default
	// 720h (30 days, as OpenAI).
	StoreTTL time.Duration `yaml:"store_ttl"`
}

func (c *Config) applyResponsesDefaults() { def(&c.Responses.StoreTTL, 30*24*time.Hour) }

func (c *Config) validateResponses() error {
	if c.Responses.StoreTTL < time.Minute {
		return errors.New("responses.store_ttl: want at least 1m")
	}
	return nil
}
