package config

import (
	"errors"
	"fmt"
	"regexp"
)

// Filters configures redaction of sensitive text in results (the design's
// "output filtering for sensitive data"). Off unless Enabled.
type Filters struct {
	// Enabled turns redaction on; default false.
	Enabled bool `yaml:"enabled"`
	// APIKeys redacts API-key-like tokens (sk-…, sluice_…, AKIA…, ghp_…,
	// xox?-…); default true when enabled.
	APIKeys *bool `yaml:"api_keys"`
	// CardNumbers redacts 13–19 digit card numbers that pass the Luhn check;
	// default true when enabled.
	CardNumbers *bool `yaml:"card_numbers"`
	// Emails redacts e-mail addresses; default true when enabled.
	Emails *bool `yaml:"emails"`
	// Custom adds patterns (Go RE2 syntax).
	Custom []FilterPattern `yaml:"custom"`
	// Hold is the longest match, in bytes, guaranteed to be caught when it
	// is split across streamed chunks: that much text is held back before it
	// is relayed. Default 256.
	Hold int `yaml:"hold"`
}

// FilterPattern is one custom redaction.
type FilterPattern struct {
	Name    string `yaml:"name"`    // shown in the replacement: [REDACTED:name]
	Pattern string `yaml:"pattern"` // RE2
}

// On reports whether a built-in filter is on (they default to on).
func On(b *bool) bool { return b == nil || *b }

func (c *Config) applyFiltersDefaults() { def(&c.Filters.Hold, 256) }

func (c *Config) validateFilters() error {
	var errs []error
	f := c.Filters
	if f.Hold < 1 || f.Hold > 4096 {
		errs = append(errs, errors.New("filters.hold: must be 1..4096"))
	}
	for i, p := range f.Custom {
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("filters.custom[%d].name: required", i))
		}
		re, err := regexp.Compile(p.Pattern)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("filters.custom[%d].pattern: %v", i, err))
		case re.MatchString(""):
			errs = append(errs, fmt.Errorf("filters.custom[%d].pattern: matches the empty string", i))
		}
	}
	return errors.Join(errs...)
}
