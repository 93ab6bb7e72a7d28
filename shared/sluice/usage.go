package sluice

import "time"

// ModelPrices are one model's list prices per token (and per request), in
// micro-dollars.
type ModelPrices struct {
	Model       string
	InputMicros int64
	OutMicros   int64
	// RequestMicros is the per-request price: added once per raw usage row
	// (each is a job that reached an engine).
	RequestMicros int64
	// GPUSecondMicros is the per-GPU-second price, applied to each row's
	// engine time rounded up to a micro-dollar, as settlement charges it.
	GPUSecondMicros int64
	// CachedInputMicros is the price of a prompt token the engine served
	// from its prefix cache, as settlement charges it
	// (config.ModelPrice.CachedInputPrice: InputMicros when unconfigured;
	// the caller fills it in, 0 is free).
	CachedInputMicros int64
}

// UsageSums are requests and tokens.
type UsageSums struct {
	Requests, PromptTokens, CompletionTokens int64
	// CachedTokens are the prompt tokens (a part of PromptTokens) the
	// engine served from its prefix cache.
	CachedTokens int64
}

// Fold is what one rollup run did.
type Fold struct {
	// Skipped: another run held the lock; this one changed nothing.
	Skipped bool
	// From and To are the xid range folded: rows inserted by transactions
	// with From <= xid < To.
	From, To int64
	// Folded are the raw rows' sums folded in this run; CostMicros their
	// list price, and CachedSavedMicros what the cached-prompt price took
	// off it.
	Folded            UsageSums
	CostMicros        int64
	CachedSavedMicros int64
	// HourlyRows and DailyRows are the rollup rows inserted or incremented.
	HourlyRows, DailyRows int64
	// OutboxRows are meter outbox rows appended.
	OutboxRows int64
	// Reconcile compares the days this fold touched.
	Reconcile Reconcile
}

// Reconcile compares rollups with raw usage and the ledger over the days a
// fold touched (Days of them, FirstDay..LastDay; zero when nothing was
// folded).
type Reconcile struct {
	FirstDay, LastDay time.Time
	Days              int
	Raw, Daily        UsageSums
	// HourlyRequests and HourlyTokens are the hourly rollup's sums.
	HourlyRequests, HourlyTokens int64
	// Unsettled: folded succeeded jobs with no ledger row yet (settlement
	// runs apart; with admission off there is none).
	Unsettled int64
	// LedgerMismatch: folded jobs whose ledger row records other tokens.
	LedgerMismatch int64
	// Differences says in words what does not agree; empty when all do.
	Differences []string
	// Took is how long the comparison ran (it reads the raw rows of every
	// day touched, so late events spread over many days cost the most).
	Took time.Duration
}

// MeterEvent is one pending outbox row.
type MeterEvent struct {
	ID               int64
	UserID           string
	Identifier       string
	Value            int64 // micro-dollars
	EventTime        time.Time
	Attempts         int
	StripeCustomerID string // "" when the user has none yet
}

// DailyUsage is one usage_daily row.
type DailyUsage struct {
	Day                                      time.Time
	Model                                    string
	Requests, PromptTokens, CompletionTokens int64
	CostMicros                               int64
	// CachedTokens are prompt tokens served from the engine's prefix cache
	// (a part of PromptTokens); CachedSavedMicros what their price took off
	// CostMicros at list price.
	CachedTokens, CachedSavedMicros int64
}

// KeyUsage is one API key's usage over a range of days, from the raw rows
// (GET /v1/usage?group_by=key), at list price.
type KeyUsage struct {
	KeyID, Name, Prefix                      string // KeyID "" for usage with no key (a console session)
	Requests, PromptTokens, CompletionTokens int64
	CachedTokens                             int64
	CostMicros, CachedSavedMicros            int64
}

// Account is what balances and statements need of a user.
type Account struct {
	ID, Tier         string
	PeriodStart      *time.Time // nil: no paid period, the calendar month counts
	PeriodEnd        *time.Time
	OverageCapMicros int64 // the user's override; 0: the tier's
	StripeCustomerID *string
	PastDueSince     *time.Time // a subscription payment failed then (nil: none)
}

// Statement is one calendar month of a user's usage and money.
type Statement struct {
	Month                                    time.Time
	Requests, PromptTokens, CompletionTokens int64
	IncludedTokens                           int64
	// CachedTokens and CachedSaved are from the ledger: the prompt tokens
	// charged at the cached price, and the micro-dollars that saved.
	// LedgerPromptTokens are the prompt tokens of the same ledger rows
	// (jobs that ran on an engine): the cache hit rate's denominator, so
	// both sides come from one source (the rollup's PromptTokens may lag).
	CachedTokens, CachedSaved, LedgerPromptTokens int64
	CreditsUsed, CreditsPurchased, Overage        int64 // micro-dollars
	Subscription                                  int64 // micro-dollars paid on subscription invoices
}

// StatementInvoice is a Stripe invoice as a statement lists it.
type StatementInvoice struct {
	ID, Status       string
	AmountPaid       int64
	HostedInvoiceURL string
	Month            time.Time // the calendar month its period starts in
}

// RevenueDay is one day of money across all users.
type RevenueDay struct {
	Day                                             time.Time
	CreditsPurchased, Subscriptions, Usage, Overage int64 // micro-dollars
}

// UsageRow is one inference_requests row as a report shows it.
type UsageRow struct {
	JobID            string
	Model            string
	PromptTokens     int64
	CompletionTokens int64
	Status           string
	LatencyMS        int64
	CachedTokens     int64 // of PromptTokens, served from the engine's prefix cache
}
