package sluice

import "time"

// UserAuth is a user with what login needs. PasswordHash and MFASecret are
// stored forms (a PHC argon2id string, a sealed secret), never plaintext.
type UserAuth struct {
	User
	PasswordHash string
	MFAEnabled   bool
	MFASecret    string
	MFALastStep  int64
}

// SigningKey is a stored JWT signing key; Private is sealed.
type SigningKey struct {
	KID       string
	Public    []byte
	Private   []byte
	CreatedAt time.Time
	RetiredAt *time.Time
}

// NewKey is what CreateKey stores.
type NewKey struct {
	UserID      string
	Name        string
	Hash        []byte
	Prefix      string
	ExpiresAt   *time.Time
	Scopes      []string
	Models      []string
	RotatedFrom *string
	Limits      Limits // the key's overrides (OverageCap is ignored)
	// CacheResponses opts the key's deterministic requests into the
	// response cache.
	CacheResponses bool
	// Max are ceilings the owner cannot lift (0: none), inherited from
	// the key that created this one.
	Max Limits
}

// UserUpdate is an admin's change; nil fields are left alone.
type UserUpdate struct {
	Role     *string
	Tier     *string
	Disabled *bool
	Limits   LimitsUpdate
}

// LimitsUpdate changes limit overrides: only the fields named in Set are
// written (LimitRPM, LimitTPM, LimitConcurrency, LimitCap); a zero value in
// To clears that override.
type LimitsUpdate struct {
	Set []string
	To  Limits
}

// The names LimitsUpdate.Set takes.
const (
	LimitRPM         = "rpm"
	LimitTPM         = "tpm"
	LimitConcurrency = "conc"
	LimitCap         = "cap"
)

// AuditEntry is one audit_log row. Detail must never hold a secret.
type AuditEntry struct {
	ID      int64          `json:"id"`
	At      time.Time      `json:"at"`
	ActorID string         `json:"actor_id"`
	Action  string         `json:"action"`
	Target  string         `json:"target"`
	Outcome string         `json:"outcome"`
	Remote  string         `json:"remote"`
	Detail  map[string]any `json:"detail"`
}

// EmailCollision is a set of live accounts whose e-mails are equal once
// normalised (lowercased, trimmed), or one not yet normalised.
type EmailCollision struct {
	Normalized string
	UserIDs    []string
	Emails     []string
}
