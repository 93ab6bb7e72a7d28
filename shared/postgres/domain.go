package postgres

import "github.com/sluice-ai/sluice/shared/sluice"

// The domain types the store reads and writes are shared/sluice's (issue 15
// item 3); these aliases keep the store's own code and tests spelling them
// as before.
type (
	UserAuth         = sluice.UserAuth
	SigningKey       = sluice.SigningKey
	NewKey           = sluice.NewKey
	UserUpdate       = sluice.UserUpdate
	LimitsUpdate     = sluice.LimitsUpdate
	AuditEntry       = sluice.AuditEntry
	EmailCollision   = sluice.EmailCollision
	LedgerRef        = sluice.LedgerRef
	Subscription     = sluice.Subscription
	Invoice          = sluice.Invoice
	BillingUser      = sluice.BillingUser
	UserBillingState = sluice.UserBillingState
	LedgerEntry      = sluice.LedgerEntry
	Balance          = sluice.Balance
	ModelPrices      = sluice.ModelPrices
	UsageSums        = sluice.UsageSums
	Fold             = sluice.Fold
	Reconcile        = sluice.Reconcile
	MeterEvent       = sluice.MeterEvent
	DailyUsage       = sluice.DailyUsage
	KeyUsage         = sluice.KeyUsage
	Account          = sluice.Account
	Statement        = sluice.Statement
	StatementInvoice = sluice.StatementInvoice
	RevenueDay       = sluice.RevenueDay
	UsageRow         = sluice.UsageRow
)

// The names LimitsUpdate.Set takes.
const (
	LimitRPM         = sluice.LimitRPM
	LimitTPM         = sluice.LimitTPM
	LimitConcurrency = sluice.LimitConcurrency
	LimitCap         = sluice.LimitCap
)

// *DB is every function's store.
var (
	_ sluice.AuthStore    = (*DB)(nil)
	_ sluice.UsageStore   = (*DB)(nil)
	_ sluice.BillingStore = (*DB)(nil)
	_ sluice.BillingTx    = (*billingTx)(nil)
)
