package config

// PrefixCache is how Sluice uses the engines' prefix (KV) caches
// (inference.prefix_cache): placement by prompt prefix and cache isolation
// between accounts.
type PrefixCache struct {
	// ShareAcrossAccounts lets one account's requests be served from cache
	// entries another account's prompts made. Off (the default): Sluice sets
	// vLLM's cache_salt to an HMAC of the account id and the placement hash
	// includes it, so no tenant can time another's prompts.
	ShareAcrossAccounts bool `yaml:"share_across_accounts"`
}
