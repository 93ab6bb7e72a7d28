package rollup

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// subject authenticates the caller and returns whose data the request is
// about: the caller's own, or user_id= for a role with billing:read.
func (d Deps) subject(r *http.Request) (string, error) {
	p, err := d.Verifier.Require(r, d.Config.Permissions)
	if err != nil {
		return "", err
	}
	uid := r.URL.Query().Get("user_id")
	if uid == "" || uid == p.UserID {
		return p.UserID, nil
	}
	if err := d.authorizeAdmin(p); err != nil {
		return "", err
	}
	if !sluice.IsUUID(uid) {
		return "", sluice.Invalid("user_id", sluice.CodeInvalidValue, "user_id must be a user id (a UUID).")
	}
	return uid, nil
}

// authorizeAdmin checks billing:read and, as the auth function does for
// its admin routes, that an admin's session (not an API key) passed MFA.
func (d Deps) authorizeAdmin(p *sluice.Principal) error {
	if err := authn.Authorize(p, d.Config.Permissions(p.Role), PermBillingRead); err != nil {
		return err
	}
	return authn.RequireAdminMFA(p, d.Config.Permissions(p.Role), d.Config.Auth.Identity.RequireMFAForAdmin)
}

// usageQuery is GET /v1/usage's parsed query.
type usageQuery struct {
	First, Last time.Time // days, inclusive
	GroupBy     string    // day (default), job or key
}

// maxUsageDays bounds one usage request's range.
const maxUsageDays = 366

// parseUsageQuery reads start, end (YYYY-MM-DD, UTC; default the last 30
// days through today) and group_by.
func parseUsageQuery(v url.Values, now time.Time) (usageQuery, error) {
	q := usageQuery{GroupBy: v.Get("group_by")}
	switch q.GroupBy {
	case "":
		q.GroupBy = "day"
	case "day", "job", "key":
	default:
		return q, sluice.Invalid("group_by", sluice.CodeInvalidValue, "group_by must be day, job or key.")
	}
	today := now.UTC().Truncate(24 * time.Hour)
	q.Last = today
	if s := v.Get("end"); s != "" {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return q, sluice.Invalid("end", sluice.CodeInvalidValue, "end must be a date, YYYY-MM-DD.")
		}
		q.Last = t
	}
	q.First = q.Last.AddDate(0, 0, -29)
	if s := v.Get("start"); s != "" {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return q, sluice.Invalid("start", sluice.CodeInvalidValue, "start must be a date, YYYY-MM-DD.")
		}
		q.First = t
	}
	if q.Last.Before(q.First) {
		return q, sluice.Invalid("end", sluice.CodeInvalidValue, "end must not be before start.")
	}
	if q.Last.Sub(q.First) >= maxUsageDays*24*time.Hour {
		return q, sluice.Invalid("start", sluice.CodeInvalidValue, "A usage request covers at most %d days.", maxUsageDays)
	}
	return q, nil
}

// cacheFigures are what the engines' prefix caches did for a row:
// cached_tokens (a part of prompt_tokens), cache_hit_rate (cached over
// prompt tokens, 0..1; 0 with no prompt) and cached_saved_micros (what the
// cached price took off the row's cost).
type cacheFigures struct {
	CachedTokens      int64   `json:"cached_tokens"`
	CacheHitRate      float64 `json:"cache_hit_rate"`
	CachedSavedMicros int64   `json:"cached_saved_micros"`
}

func cacheOf(prompt, cached, saved int64) cacheFigures {
	return cacheFigures{CachedTokens: cached, CacheHitRate: hitRate(cached, prompt), CachedSavedMicros: saved}
}

// hitRate is cached over prompt tokens, rounded to 4 decimals.
func hitRate(cached, prompt int64) float64 {
	if prompt <= 0 || cached <= 0 {
		return 0
	}
	return math.Round(float64(min(cached, prompt))/float64(prompt)*1e4) / 1e4
}

type dayRow struct {
	Date             string `json:"date"`
	Model            string `json:"model"`
	Requests         int64  `json:"requests"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	CostMicros       int64  `json:"cost_micros"`
	cacheFigures
}

type jobRow struct {
	JobID            string `json:"job_id"`
	Model            string `json:"model"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	CachedTokens     int64  `json:"cached_tokens"`
	Status           string `json:"status"`
	LatencyMS        int64  `json:"latency_ms"`
}

// keyRow is one API key's usage over the range (group_by=key); key_id is
// null for usage with no key (console sessions).
type keyRow struct {
	KeyID            *string `json:"key_id"`
	Name             string  `json:"name"`
	Prefix           string  `json:"prefix"`
	Requests         int64   `json:"requests"`
	PromptTokens     int64   `json:"prompt_tokens"`
	CompletionTokens int64   `json:"completion_tokens"`
	CostMicros       int64   `json:"cost_micros"`
	cacheFigures
}

// usage: GET /v1/usage — by day and model from the daily rollup (what the
// last run folded, and folded_at: when), group_by=job for the raw per-job
// rows, or group_by=key for the raw rows summed per API key over the range
// (at list price, as the rollup prices them). Day and key rows carry the
// prefix cache's figures (cacheFigures).
func (d Deps) usage(w http.ResponseWriter, r *http.Request) {
	uid, err := d.subject(r)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	uq, err := parseUsageQuery(r.URL.Query(), time.Now())
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	if uq.GroupBy == "job" {
		rows, err := d.read().UsageForUser(r.Context(), uid)
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		out := make([]jobRow, len(rows))
		for i, u := range rows {
			out[i] = jobRow{JobID: u.JobID, Model: u.Model, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
				CachedTokens: u.CachedTokens, Status: u.Status, LatencyMS: u.LatencyMS}
		}
		openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
		return
	}
	if uq.GroupBy == "key" {
		rows, err := d.read().UsageByKey(r.Context(), uid, uq.First, uq.Last, prices(d))
		if err != nil {
			openai.WriteError(w, r, d.Log, err)
			return
		}
		out := make([]keyRow, len(rows))
		for i, k := range rows {
			out[i] = keyRow{Name: k.Name, Prefix: k.Prefix, Requests: k.Requests, PromptTokens: k.PromptTokens,
				CompletionTokens: k.CompletionTokens, CostMicros: k.CostMicros,
				cacheFigures: cacheOf(k.PromptTokens, k.CachedTokens, k.CachedSavedMicros)}
			if k.KeyID != "" {
				out[i].KeyID = &rows[i].KeyID
			}
		}
		openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out,
			"start": uq.First.Format(time.DateOnly), "end": uq.Last.Format(time.DateOnly)})
		return
	}
	// When the rows were last folded, read first: a fold committing between
	// the two reads makes the rows newer than it says, never older.
	folded, err := d.read().UsageFoldedAt(r.Context())
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	rows, err := d.read().UsageDaily(r.Context(), uid, uq.First, uq.Last)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	out := make([]dayRow, len(rows))
	for i, u := range rows {
		out[i] = dayRow{Date: u.Day.Format(time.DateOnly), Model: u.Model, Requests: u.Requests,
			PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, CostMicros: u.CostMicros,
			cacheFigures: cacheOf(u.PromptTokens, u.CachedTokens, u.CachedSavedMicros)}
	}
	// folded_at: the rollups hold requests up to then (null: never folded);
	// newer requests appear after the next run.
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out, "folded_at": folded})
}

type period struct {
	Label string     `json:"label"`
	Start time.Time  `json:"start"`
	End   *time.Time `json:"end"`
}

type included struct {
	Limit     int64 `json:"limit"` // -1: unlimited
	Used      int64 `json:"used"`
	Remaining int64 `json:"remaining"` // -1: unlimited
}

type balance struct {
	Object           string   `json:"object"`
	UserID           string   `json:"user_id"`
	Tier             string   `json:"tier"`
	Period           period   `json:"period"`
	IncludedTokens   included `json:"included_tokens"`
	CreditMicros     int64    `json:"credit_micros"`
	PostpaidMicros   int64    `json:"postpaid_micros"`
	OverageCapMicros int64    `json:"overage_cap_micros"`
	// DebtMicros is what the prepaid balance is below zero (usage past
	// every source, or a clawback under jobs in flight): owed, audited.
	DebtMicros int64 `json:"debt_micros"`
	// FundsSuspended: a card dispute is open; prepaid credit and postpaid
	// use admit nothing until it closes.
	FundsSuspended bool  `json:"funds_suspended"`
	OpenDisputes   int64 `json:"open_disputes"`
}

// balance: GET /v1/billing/balance — from the ledger (the primary: a
// balance must not lag), for the user's current period.
func (d Deps) balance(w http.ResponseWriter, r *http.Request) {
	uid, err := d.subject(r)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	u, err := d.DB.Account(r.Context(), uid)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	// The tier and period as admission sees them: a past-due subscriber
	// past the grace period is on the free tier and the calendar month.
	now := time.Now()
	p := sluice.Principal{Tier: u.Tier, PeriodStart: u.PeriodStart, PastDueSince: u.PastDueSince}
	p.ResolveBilling(now, d.Config.Billing.PaymentGrace)
	u.Tier = p.Tier
	if p.Period == "" {
		u.PeriodStart, u.PeriodEnd = nil, nil
	}
	per := currentPeriod(u.PeriodStart, u.PeriodEnd, now)
	b, err := d.DB.LedgerBalance(r.Context(), uid, per.Label)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	tier, ok := d.Config.Tiers[u.Tier]
	if !ok {
		tier = d.Config.Tiers[sluice.TierFree]
	}
	inc := included{Limit: -1, Used: b.IncludedTokens, Remaining: -1}
	if tier.IncludedCredits.Kind == config.Fixed {
		inc.Limit = tier.IncludedCredits.Count()
		inc.Remaining = max(inc.Limit-b.IncludedTokens, 0)
	}
	limits := admission.EffectiveLimits(d.Config, u.Tier, sluice.Limits{OverageCap: u.OverageCapMicros})
	openai.WriteJSON(w, http.StatusOK, balance{Object: "billing.balance", UserID: uid, Tier: u.Tier, Period: per,
		IncludedTokens: inc, CreditMicros: b.CreditMicros, PostpaidMicros: b.OverageMicros, OverageCapMicros: limits.OverageCap,
		DebtMicros: max(-b.CreditMicros, 0), FundsSuspended: b.OpenDisputes > 0, OpenDisputes: b.OpenDisputes})
}

// currentPeriod is the period a user's usage counts against now: the paid
// subscription period when there is one, else the UTC calendar month.
func currentPeriod(start, end *time.Time, now time.Time) period {
	if start != nil {
		return period{Label: sluice.PeriodLabel(*start), Start: start.UTC(), End: utc(end)}
	}
	m := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	e := m.AddDate(0, 1, 0)
	return period{Label: sluice.CalendarPeriod(now), Start: m, End: &e}
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

type stripeInvoice struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	AmountPaidMicros int64  `json:"amount_paid_micros"`
	HostedInvoiceURL string `json:"hosted_invoice_url"`
}

type statement struct {
	Object                 string          `json:"object"`
	Period                 string          `json:"period"`
	Start                  time.Time       `json:"start"`
	End                    time.Time       `json:"end"`
	Tier                   string          `json:"tier"`
	Requests               int64           `json:"requests"`
	PromptTokens           int64           `json:"prompt_tokens"`
	CompletionTokens       int64           `json:"completion_tokens"`
	IncludedTokensUsed     int64           `json:"included_tokens_used"`
	CreditsUsedMicros      int64           `json:"credits_used_micros"`
	CreditsPurchasedMicros int64           `json:"credits_purchased_micros"`
	OverageMicros          int64           `json:"overage_micros"`
	SubscriptionMicros     int64           `json:"subscription_micros"`
	TotalDueMicros         int64           `json:"total_due_micros"`
	StripeInvoices         []stripeInvoice `json:"stripe_invoices"`
	// The prefix cache's part, from the ledger: the prompt tokens charged
	// at the cached price, their share of the ledger's prompt tokens, and
	// what the cached price saved (already off the money above).
	cacheFigures
}

// statementMonths is how many months GET /v1/billing/invoices lists.
const statementMonths = 24

// invoices: GET /v1/billing/invoices — monthly statements (UTC calendar
// months), newest first: requests and tokens from the daily rollup; included
// tokens, credit and overage from the ledger by the month of each row;
// subscription fees from Stripe invoices by the month their period starts.
// total_due is what is billed in arrears and by subscription: overage plus
// subscription fees (prepaid credit was paid for when bought).
func (d Deps) invoices(w http.ResponseWriter, r *http.Request) {
	uid, err := d.subject(r)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	u, err := d.DB.Account(r.Context(), uid)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	ss, err := d.read().Statements(r.Context(), uid, statementMonths)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	invs, err := d.read().UserInvoices(r.Context(), uid)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	out := make([]statement, len(ss))
	for i, s := range ss {
		st := statement{Object: "billing.statement", Period: s.Month.Format("2006-01"), Start: s.Month,
			End: s.Month.AddDate(0, 1, 0), Tier: u.Tier, Requests: s.Requests, PromptTokens: s.PromptTokens,
			CompletionTokens: s.CompletionTokens, IncludedTokensUsed: s.IncludedTokens, CreditsUsedMicros: s.CreditsUsed,
			CreditsPurchasedMicros: s.CreditsPurchased, OverageMicros: s.Overage, SubscriptionMicros: s.Subscription,
			TotalDueMicros: s.Overage + s.Subscription, StripeInvoices: []stripeInvoice{},
			cacheFigures: cacheOf(s.LedgerPromptTokens, s.CachedTokens, s.CachedSaved)}
		for _, inv := range invs {
			if inv.Month.Equal(s.Month) {
				st.StripeInvoices = append(st.StripeInvoices, stripeInvoice{ID: inv.ID, Status: inv.Status,
					AmountPaidMicros: inv.AmountPaid, HostedInvoiceURL: inv.HostedInvoiceURL})
			}
		}
		out[i] = st
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

type revenueDay struct {
	Date                   string `json:"date"`
	CreditsPurchasedMicros int64  `json:"credits_purchased_micros"`
	SubscriptionsMicros    int64  `json:"subscriptions_micros"`
	UsageMicros            int64  `json:"usage_micros"`
	OverageMicros          int64  `json:"overage_micros"`
}

// revenue: GET /v1/admin/revenue?days=N (1..366, default 30) — billing:read.
func (d Deps) revenue(w http.ResponseWriter, r *http.Request) {
	p, err := d.Verifier.Require(r, d.Config.Permissions)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	if err := d.authorizeAdmin(p); err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	days := 30
	if s := r.URL.Query().Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxUsageDays {
			openai.WriteError(w, r, d.Log, sluice.Invalid("days", sluice.CodeInvalidValue, "days must be a whole number from 1 to %d.", maxUsageDays))
			return
		}
		days = n
	}
	rows, err := d.read().Revenue(r.Context(), days)
	if err != nil {
		openai.WriteError(w, r, d.Log, err)
		return
	}
	out := make([]revenueDay, len(rows))
	for i, x := range rows {
		out[i] = revenueDay{Date: x.Day.Format(time.DateOnly), CreditsPurchasedMicros: x.CreditsPurchased,
			SubscriptionsMicros: x.Subscriptions, UsageMicros: x.Usage, OverageMicros: x.Overage}
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}
