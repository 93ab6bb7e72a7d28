package sluice

import (
	"context"
	"crypto/ed25519"
	"time"
)

// The stores each function needs, as narrow as its calls: shared/postgres
// implements all of them (its *DB, checked there), and a function's Deps
// names the one it uses, so a function depends on the domain, not on the
// driver (internal/archtest enforces it).

// AuthStore is what the auth function reads and writes: users and their
// credentials, API keys, refresh tokens, signing keys and the audit log.
type AuthStore interface {
	// Users.
	CreateUser(ctx context.Context, email, passwordHash, tier, role string) (User, error)
	UpdateUser(ctx context.Context, id string, up UserUpdate) (User, error)
	DeleteUser(ctx context.Context, id string) error
	ListUsers(ctx context.Context, after, search string, limit int) ([]User, error)
	EmailCollisions(ctx context.Context) ([]EmailCollision, error)
	UserAuthByEmail(ctx context.Context, email string) (UserAuth, error)
	UserAuthByID(ctx context.Context, id string) (UserAuth, error)
	UserPrincipal(ctx context.Context, userID string) (Principal, error)

	// Second factors.
	SetMFASecret(ctx context.Context, userID, sealed string) error
	SetMFAEnabled(ctx context.Context, userID string, on bool) error
	AdvanceMFAStep(ctx context.Context, userID string, step int64) (bool, error)
	ReplaceRecoveryCodes(ctx context.Context, userID string, hashes []string) error
	UseRecoveryCode(ctx context.Context, userID, hash string) (bool, error)

	// API keys.
	CreateKey(ctx context.Context, n NewKey) (APIKey, error)
	GetKey(ctx context.Context, userID, keyID string) (APIKey, error)
	ListKeys(ctx context.Context, userID string) ([]APIKey, error)
	RevokeKey(ctx context.Context, userID, keyID string) ([]byte, error)
	RevokeAnyKey(ctx context.Context, keyID string) (userID string, err error)
	ExpireKeyBy(ctx context.Context, userID, keyID string, until time.Time) error
	UpdateKeyLimits(ctx context.Context, keyID, owner string, up LimitsUpdate, cache *bool, name *string) (string, error)

	// Sessions (refresh tokens).
	InsertRefreshToken(ctx context.Context, hash []byte, familyID, userID string, expires time.Time, mfa bool) error
	UseRefreshToken(ctx context.Context, hash []byte) (familyID, userID string, mfa, reused bool, err error)
	RevokeRefreshFamilyOf(ctx context.Context, hash []byte) (familyID, userID string, err error)
	RevokeUserSessions(ctx context.Context, userID string) error

	// JWT signing keys.
	SigningKeys(ctx context.Context, grace time.Duration) ([]SigningKey, error)
	RotateSigningKey(ctx context.Context, k SigningKey) error
	PublicKeys(ctx context.Context, grace time.Duration) (map[string]ed25519.PublicKey, error)

	// The audit log.
	InsertAudit(ctx context.Context, e AuditEntry) error
	ListAudit(ctx context.Context, before int64, limit int) ([]AuditEntry, error)
}

// UsageReports are the usage-rollup function's heavy reads, which a read
// replica may serve.
type UsageReports interface {
	UsageForUser(ctx context.Context, userID string) ([]UsageRow, error)
	UsageFoldedAt(ctx context.Context) (*time.Time, error)
	UsageDaily(ctx context.Context, userID string, first, last time.Time) ([]DailyUsage, error)
	UsageByKey(ctx context.Context, userID string, first, last time.Time, prices []ModelPrices) ([]KeyUsage, error)
	Statements(ctx context.Context, userID string, n int) ([]Statement, error)
	UserInvoices(ctx context.Context, userID string) ([]StatementInvoice, error)
	Revenue(ctx context.Context, days int) ([]RevenueDay, error)
}

// UsageStore is what the usage-rollup function reads and writes: the fold
// of raw usage into rollups, the meter outbox, and a user's account and
// balance.
type UsageStore interface {
	UsageReports
	EnsureUsagePartitions(ctx context.Context, ahead int) (int, error)
	FoldUsage(ctx context.Context, prices []ModelPrices) (Fold, error)
	MeterPending(ctx context.Context, limit int) ([]MeterEvent, error)
	MeterSent(ctx context.Context, id int64, customer, note string) error
	MeterFailed(ctx context.Context, id int64, msg string, backoff time.Duration, counted bool) error
	Account(ctx context.Context, id string) (Account, error)
	LedgerBalance(ctx context.Context, userID, period string) (Balance, error)
}

// BillingStore is what the billing-webhook function reads and writes.
type BillingStore interface {
	// ApplyStripeEvent records the Stripe event id and runs apply in the
	// same transaction; false, without running apply, when the event was
	// already processed. An error from apply rolls everything back.
	ApplyStripeEvent(ctx context.Context, id, typ string, created time.Time, apply func(BillingTx) error) (bool, error)
	BillingUser(ctx context.Context, userID string) (BillingUser, error)
	SetStripeCustomer(ctx context.Context, userID, customer string) (string, error)
	LedgerByRefs(ctx context.Context, refs []string) ([]LedgerRef, error)
	OpenDisputes(ctx context.Context, userID string) (int64, error)
}

// BillingTx is one Stripe webhook event's transaction: the event is
// recorded and its effects written together, or neither.
type BillingTx interface {
	UserIDByCustomer(ctx context.Context, customer string) (string, error)
	UserIDByPayment(ctx context.Context, payment string) (string, error)
	SetStripeCustomer(ctx context.Context, userID, customer string) error
	// LockUser serialises the user's billing changes until the
	// transaction ends.
	LockUser(ctx context.Context, userID string) error
	Grant(ctx context.Context, userID, period string, micros int64, note, ref, payment string) (int64, error)
	Clawback(ctx context.Context, userID, period string, upTo int64, note, ref, payment string) (id, taken int64, err error)
	Reversal(ctx context.Context, userID, period string, micros int64, note, ref string) (int64, error)
	UpsertSubscription(ctx context.Context, s Subscription, eventAt time.Time, weak bool) (bool, error)
	SetUserTier(ctx context.Context, userID, tier string) error
	UpsertInvoice(ctx context.Context, inv Invoice, eventAt time.Time) error
	StartPeriod(ctx context.Context, userID string, start, end time.Time) error
	MarkPastDue(ctx context.Context, userID string, at time.Time) error
	OpenDispute(ctx context.Context, id, userID, payment string, micros int64, status string) (bool, error)
	CloseDispute(ctx context.Context, id, status string) (userID string, taken int64, err error)
}
