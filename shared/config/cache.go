package config

import (
	"errors"
	"time"
)

// PrefixCache is how Sluice uses the engines' prefix (KV) caches
// (inference.prefix_cache): placement by prompt prefix and cache isolation
// between accounts (docs/ARCHITECTURE.md, "Prefix-aware placement").
type PrefixCache struct {
	// ShareAcrossAccounts lets one account's requests be served from cache
	// entries another account's prompts made. Off (the default): Sluice sets
	// vLLM's cache_salt to an HMAC of the account id and the placement hash
	// includes it, so no tenant can time another's prompts.
	ShareAcrossAccounts bool `yaml:"share_across_accounts"`
	// Placement sends requests whose prompts share a prefix to the endpoint
	// that served that prefix last (the claim prefers them there). Unset
	// means on; false places by free slots alone, as before.
	Placement *bool `yaml:"placement"`
	// BlockChars is the size of one prefix block, in characters of the
	// rendered prompt: a prompt is hashed as a chain of blocks, so two
	// prompts match as far as their first differing block. Default 512
	// (about 128 tokens); a prompt shorter than one block is not placed.
	BlockChars int `yaml:"block_chars"`
	// MaxBlocks bounds the chain (and so the part of a prompt that counts
	// for placement: BlockChars × MaxBlocks characters); default 8.
	MaxBlocks int `yaml:"max_blocks"`
	// SpillAfter is how long a queued job waits for the endpoint its prefix
	// maps to before any worker may take it to another endpoint: a hot
	// prefix spreads, and a job never starves behind a full or dead
	// endpoint. Default 100ms. Longer keeps caches hotter; shorter trades
	// cache hits for queue time.
	SpillAfter time.Duration `yaml:"spill_after"`
	// AffinityTTL is how long a prefix→endpoint entry lives after its last
	// use; default 10m. The entries of a model are also bounded in number
	// (MaxEntries), least recently used dropped first.
	AffinityTTL time.Duration `yaml:"affinity_ttl"`
	// MaxEntries bounds a model's prefix→endpoint entries (per queue
	// shard); default 100000 (a few MB of Redis).
	MaxEntries int `yaml:"max_entries"`
	// ScanWindow is how many queued jobs per priority class a claim looks
	// at for one whose prefix belongs to the claiming worker's endpoints;
	// default 64. Jobs beyond it are reached as those ahead go.
	ScanWindow int `yaml:"scan_window"`
}

// PlacementOn reports whether prefix-aware placement is on (the default).
func (p PrefixCache) PlacementOn() bool { return p.Placement == nil || *p.Placement }

func (c *Config) applyPrefixCacheDefaults() {
	p := &c.Inference.PrefixCache
	def(&p.BlockChars, 512)
	def(&p.MaxBlocks, 8)
	def(&p.SpillAfter, 100*time.Millisecond)
	def(&p.AffinityTTL, 10*time.Minute)
	def(&p.MaxEntries, 100000)
	def(&p.ScanWindow, 64)
}

func (c *Config) validatePrefixCache() error {
	var errs []error
	p := c.Inference.PrefixCache
	if p.BlockChars < 16 || p.BlockChars > 1<<16 {
		errs = append(errs, errors.New("inference.prefix_cache.block_chars: must be 16..65536"))
	}
	if p.MaxBlocks < 1 || p.MaxBlocks > 64 {
		errs = append(errs, errors.New("inference.prefix_cache.max_blocks: must be 1..64"))
	}
	if p.SpillAfter < time.Millisecond {
		errs = append(errs, errors.New("inference.prefix_cache.spill_after: must be at least 1ms"))
	}
	if p.AffinityTTL < time.Second {
		errs = append(errs, errors.New("inference.prefix_cache.affinity_ttl: must be at least 1s"))
	}
	if p.MaxEntries < 16 {
		errs = append(errs, errors.New("inference.prefix_cache.max_entries: must be at least 16"))
	}
	if p.ScanWindow < 1 || p.ScanWindow > 10000 {
		errs = append(errs, errors.New("inference.prefix_cache.scan_window: must be 1..10000"))
	}
	return errors.Join(errs...)
}
