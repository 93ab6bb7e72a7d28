package sluice

import "time"

// LedgerRef is a ledger row written for a Stripe object.
type LedgerRef struct {
	ID           int64
	UserID       string
	CreditMicros int64
}

// Subscription is a Stripe subscription as an event describes it.
type Subscription struct {
	ID, UserID, Tier, Status string
	PeriodStart, PeriodEnd   *time.Time
	CancelAtPeriodEnd        bool
}

// Invoice is a Stripe invoice as an event describes it.
type Invoice struct {
	ID, UserID, SubscriptionID, Status string
	PeriodStart, PeriodEnd             *time.Time
	AmountDueMicros, AmountPaidMicros  int64
	Currency, HostedURL                string
}

// BillingUser is what Checkout and the portal need about a user.
type BillingUser struct {
	ID, Email, StripeCustomer string
}

// UserBillingState is a user's billing columns.
type UserBillingState struct {
	Tier, StripeCustomer                 string
	PeriodStart, PeriodEnd, PastDueSince *time.Time
}

// LedgerEntry is one settled job as the ledger records it.
type LedgerEntry struct {
	UserID           string
	Kind             string // usage (ran on an engine) or cache (served from the response cache)
	JobID            string
	Period           string // YYYY-MM
	Model            string
	PromptTokens     int64
	CompletionTokens int64
	IncludedTokens   int64 // included tokens consumed
	CreditMicros     int64 // prepaid credit spent (>= 0; stored negated)
	OverageMicros    int64 // postpaid usage
	DebtMicros       int64 // charged past every source (the balance goes below zero by it); stored in credit_micros too
	ExcessTokens     int64 // tokens past the hold's bounds
	Unheld           bool  // settled without its hold, from the job's record
	// ServiceTier is the tier the job was charged at (flex, priority,
	// batch); empty at the base price.
	ServiceTier string
	// CachedTokens are the prompt tokens (a part of PromptTokens) the
	// engine served from its prefix cache, charged at the cached price.
	CachedTokens int64
	// CachedSavedMicros is what the cached price saved against the input
	// price (admission.Charge.CachedSaved).
	CachedSavedMicros int64
}

// Balance is a user's standing as the ledger sums it.
type Balance struct {
	CreditMicros   int64   // prepaid credit left
	IncludedTokens int64   // included tokens used in the period
	OverageMicros  int64   // postpaid usage in the period
	GrantIDs       []int64 // every grant counted in CreditMicros
	OpenDisputes   int64   // card disputes still open: credit and postpaid use are suspended
}
