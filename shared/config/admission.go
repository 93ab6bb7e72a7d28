package config

import (
	"errors"
	"fmt"
	"time"
)

// Admission configures limits and reservation at submit (shared/admission).
type Admission struct {
	// Disabled turns admission control off: no limits, no reservation, no
	// charges. Default false.
	Disabled bool `yaml:"disabled"`
	// FailOpen admits requests unlimited and uncharged when Redis cannot be
	// reached. Default false: such requests get 503 (fail closed).
	FailOpen bool `yaml:"fail_open"`
	// LeaseTTL is how long a concurrency slot lives without being refreshed,
	// so a killed submit instance's slots come back; default 15s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// HoldGrace: a reservation whose job never settles (its submit instance
	// died before enqueueing it) is released this long after the job's
	// deadline; default 10m.
	HoldGrace time.Duration `yaml:"hold_grace"`
	// MessageOverheadTokens is added to the prompt bound per chat message,
	// for the chat template's own tokens; default 8.
	MessageOverheadTokens int64 `yaml:"message_overhead_tokens"`
	// SettleIdle is how long a settlement claimed by a dead process waits
	// before another takes it; default 10s.
	SettleIdle time.Duration `yaml:"settle_idle"`
	// SettleLinger is how long the settler waits for more ended jobs after
	// settling a partial batch, so that a low rate still settles in batches
	// (one ledger transaction and one pipeline for many jobs); a hold stays
	// held at most this much longer. Default 10ms; negative: none.
	SettleLinger time.Duration `yaml:"settle_linger"`
	// CacheTTL is how long a cached response lives; default 1h. The cache
	// serves deterministic requests (temperature 0, n 1, not streamed) that
	// opt in with the header `Sluice-Cache: on`, or per API key (cache_responses).
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// Custom is what a tier's 'custom' limit means for a user (or key) an
	// admin has set no override for.
	Custom CustomLimits `yaml:"custom"`
}

// CustomLimits stand in for a tier's 'custom' rate limits until an admin
// sets the user's own: deliberately modest, so a forgotten override is
// noticed rather than unlimited.
type CustomLimits struct {
	// RequestsPerMinute: default 60.
	RequestsPerMinute int64 `yaml:"requests_per_minute"`
	// TokensPerMinute: default 100000.
	TokensPerMinute int64 `yaml:"tokens_per_minute"`
	// Concurrency: default 8.
	Concurrency int64 `yaml:"concurrency"`
}

// TierLimits are the tier keys Sluice adds to the design's tiers block.
type TierLimits struct {
	// TokensPerMinute bounds reserved tokens (prompt bound + max_tokens) per
	// rolling minute; default unlimited.
	TokensPerMinute Quantity `yaml:"tokens_per_minute"`
	// Concurrency bounds requests in flight at once; default unlimited.
	Concurrency Quantity `yaml:"concurrency"`
	// MaxTokens caps max_tokens per request (0: the model's context).
	MaxTokens int64 `yaml:"max_tokens"`
	// Overage is "postpaid" when usage past included tokens and prepaid
	// credit may be billed in arrears; "" (default) refuses it.
	Overage string `yaml:"overage"`
	// OverageCap is the most postpaid usage per user per month, in dollars;
	// default 100 where overage is postpaid.
	OverageCap Micros `yaml:"overage_cap"`
}

// OveragePostpaid is the Overage value that allows billing in arrears.
const OveragePostpaid = "postpaid"

func (c *Config) applyAdmissionDefaults() {
	a := &c.Admission
	def(&a.LeaseTTL, 15*time.Second)
	def(&a.HoldGrace, 10*time.Minute)
	def(&a.MessageOverheadTokens, 8)
	def(&a.SettleIdle, 10*time.Second)
	def(&a.SettleLinger, 10*time.Millisecond)
	def(&a.CacheTTL, time.Hour)
	def(&a.Custom.RequestsPerMinute, 60)
	def(&a.Custom.TokensPerMinute, 100_000)
	def(&a.Custom.Concurrency, 8)
	for name, t := range c.Tiers {
		if t.TokensPerMinute == (Quantity{}) {
			t.TokensPerMinute = Quantity{Kind: Unlimited}
		}
		if t.Concurrency == (Quantity{}) {
			t.Concurrency = Quantity{Kind: Unlimited}
		}
		if t.Overage == OveragePostpaid && t.OverageCap == 0 {
			t.OverageCap = 100_000_000
		}
		c.Tiers[name] = t
	}
}

func (c *Config) validateAdmission() error {
	var errs []error
	for name, t := range c.Tiers {
		if t.Overage != "" && t.Overage != OveragePostpaid {
			errs = append(errs, fmt.Errorf("tiers.%s.overage: want postpaid or nothing, got %q", name, t.Overage))
		}
		for field, q := range map[string]Quantity{"tokens_per_minute": t.TokensPerMinute, "concurrency": t.Concurrency} {
			if q.Kind == Fixed && (q.Value%1e6 != 0 || q.Value <= 0) {
				errs = append(errs, fmt.Errorf("tiers.%s.%s: must be a positive whole number", name, field))
			}
		}
		if t.RateLimit.Kind == Fixed && t.RateLimit.Value <= 0 {
			errs = append(errs, fmt.Errorf("tiers.%s.rate_limit: must be positive", name))
		}
		if t.MaxTokens < 0 {
			errs = append(errs, fmt.Errorf("tiers.%s.max_tokens: must not be negative", name))
		}
	}
	if cu := c.Admission.Custom; cu.RequestsPerMinute < 0 || cu.TokensPerMinute < 0 || cu.Concurrency < 0 {
		errs = append(errs, errors.New("admission.custom: limits must be positive"))
	}
	if c.Admission.LeaseTTL < time.Second {
		errs = append(errs, errors.New("admission.lease_ttl: must be at least 1s"))
	}
	return errors.Join(errs...)
}
