package sluice

import "time"

// Role names from the design's auth.rbac block.
const (
	RoleAdmin     = "admin"
	RoleDeveloper = "developer"
	RoleUser      = "user"
)

// Permissions from the design's auth.rbac block.
const (
	PermAll              = "*"
	PermModelRead        = "model:read"
	PermModelWrite       = "model:write"
	PermInferenceExecute = "inference:execute"
)

// Tier names from the design's tiers block.
const (
	TierFree       = "free"
	TierPro        = "pro"
	TierEnterprise = "enterprise"
)

// Principal is who a request acts for, as resolved from a credential.
type Principal struct {
	UserID   string
	Email    string
	Role     string
	Tier     string
	KeyID    string   // the API key used; empty for a session token
	Scopes   []string // key scopes; empty means the owner's permissions
	Models   []string // key model allowlist; empty means all models
	Disabled bool
	// MFA is set for a session that passed a second factor.
	MFA bool
	// SessionID is the login (refresh family) a session token belongs to.
	SessionID string
	// Limits are the overrides set for this user and key, the key's winning
	// per field; admission applies them instead of the tier's.
	Limits Limits
	// CacheResponses: the API key opted in to the response cache, so its
	// deterministic requests use it unless a request says otherwise.
	CacheResponses bool
	// Period is the label of the subscription period the user's included
	// tokens count against (PeriodLabel); empty: the calendar month. The
	// verifier sets it for a paying, non-suspended subscriber.
	Period string
	// PeriodStart is when the user's current paid subscription period began
	// (nil: none) and PastDueSince when a subscription payment failed (nil:
	// none), as stored; the verifier resolves Tier and Period from them.
	PeriodStart, PastDueSince *time.Time
}

// ResolveBilling applies the user's billing state to the principal: past
// the grace period after a failed payment the user is served as the free
// tier, and a paying subscriber's allowances count against the paid period.
func (p *Principal) ResolveBilling(now time.Time, grace time.Duration) {
	p.Period = ""
	if p.Tier == TierFree {
		return
	}
	if p.PastDueSince != nil && now.Sub(*p.PastDueSince) > grace {
		p.Tier = TierFree // suspended: the calendar month and free limits
		return
	}
	if p.PeriodStart != nil {
		p.Period = PeriodLabel(*p.PeriodStart)
	}
}

// Limits are per-user or per-key overrides of a tier's limits, set by an
// admin (or, for a key, by its owner within the owner's own limits). Zero
// means not set: the next level (key, then user, then tier) decides.
type Limits struct {
	RequestsPerMinute int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int64 `json:"tokens_per_minute,omitempty"`
	Concurrency       int64 `json:"concurrency,omitempty"`
	// OverageCap is the most postpaid usage per month, micro-dollars; users
	// only (a key has none).
	OverageCap int64 `json:"overage_cap_micros,omitempty"`
}

// User is an account.
type User struct {
	ID        string
	Email     string
	Role      string
	Tier      string
	Disabled  bool
	CreatedAt time.Time
	Limits    Limits // overrides set by an admin
}

// APIKey is a stored key. The secret itself is never stored, only its HMAC.
type APIKey struct {
	ID         string
	UserID     string
	Name       string
	Prefix     string // display prefix, e.g. "sk-sluice-AbC1"
	Hash       []byte
	CreatedAt  time.Time
	LastUsedAt *time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	Scopes     []string // permissions the key may use; empty: the owner's
	Models     []string // models the key may call; empty: all
	Limits     Limits   // the key's own overrides (never OverageCap)
	// Max are the key's ceilings (0: none): set by an admin or inherited
	// from the key that created it; the owner cannot lift them.
	Max Limits
	// CacheResponses opts the key's deterministic requests into the
	// response cache (Sluice-Cache: off on a request still bypasses it).
	CacheResponses bool
}
