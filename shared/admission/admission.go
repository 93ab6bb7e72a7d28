// Package admission decides, in one atomic Redis script per request, whether
// a request may run now: requests and tokens per rolling minute, concurrent
// requests (leases that lapse when their holder dies), and the worst-case
// cost held against the user's funds (monthly included tokens, then prepaid
// credit, then postpaid overage up to a cap). Every terminal path of a job
// emits a settle event; the Settler charges the real usage to the
// append-only ledger in PostgreSQL and to the live counters in Redis, once
// per job. The counters are a cache of ledger sums plus in-flight holds and
// are loaded from the ledger when missing.
package admission

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var (
	//go:embed lua/admit.lua
	admitLua string
	//go:embed lua/settle.lua
	settleLua string
	//go:embed lua/load.lua
	loadLua string
	//go:embed lua/grant.lua
	grantLua string
	//go:embed lua/lease.lua
	leaseLua string
	//go:embed lua/lapse.lua
	lapseLua string
	//go:embed lua/grow.lua
	growLua string
	//go:embed lua/unlock.lua
	unlockLua string

	admitScript  = redis.NewScript(admitLua)
	settleScript = redis.NewScript(settleLua)
	loadScript   = redis.NewScript(loadLua)
	grantScript  = redis.NewScript(grantLua)
	leaseScript  = redis.NewScript(leaseLua)
	lapseScript  = redis.NewScript(lapseLua)
	growScript   = redis.NewScript(growLua)
	unlockScript = redis.NewScript(unlockLua)
)

// window is the rate limits' rolling window.
const window = time.Minute

// Ledger is the part of the store admission reads and writes.
type Ledger interface {
	LedgerBalance(ctx context.Context, userID, period string) (postgres.Balance, error)
	LedgerSettled(ctx context.Context, es []postgres.LedgerEntry) ([]string, error)
	LedgerHasJob(ctx context.Context, jobID string) (bool, error)
}

// Observer counts settlements that went past their holds (telemetry
// implements it; nil observes nothing).
type Observer interface {
	// Settled is called once per ledger row written whose usage went past
	// its hold's bounds (excess tokens), was covered by no funds (debt
	// micro-dollars), or was charged without its hold (unheld).
	Settled(model string, excessTokens, debtMicros int64, unheld bool)
}

// Admitter admits requests against limits and funds.
type Admitter struct {
	cfg *config.Config
	rdb redis.UniversalClient
	db  Ledger
	log *slog.Logger
	obs Observer
	dur *redisq.Durable
	// keeper refreshes the synchronous requests' leases (KeepAlive).
	keeper keeper
}

// Observe makes o count settlements past their holds.
func (a *Admitter) Observe(o Observer) { a.obs = o }

// Durable makes settlement's charges wait for replicas (redis.wait_replicas)
// through d, shared with the queue so one counter reports WAIT timeouts.
func (a *Admitter) Durable(d *redisq.Durable) { a.dur = d }

// New builds an Admitter; its charges do not wait for replicas until
// Durable is called.
func New(cfg *config.Config, rdb redis.UniversalClient, db Ledger, log *slog.Logger) *Admitter {
	return &Admitter{cfg: cfg, rdb: rdb, db: db, log: log, dur: redisq.NewDurable(rdb, 0, 0, log)}
}

// Request is what admission needs to know about one inference request.
type Request struct {
	JobID       string
	UserID      string
	Tier        string
	Model       *config.Model
	PromptBytes int64 // bytes the template can render (or token ids): bounds the prompt's tokens
	// ExtraTokens: prompt tokens beyond bytes (template and tools overhead,
	// media parts), from shared/openai.
	ExtraTokens int64
	Messages    int   // chat messages (each adds template tokens)
	MaxTokens   int64 // 0: the engine may use the rest of the context
	// Room: the completion bound per choice and prompt when MaxTokens is 0;
	// 0 derives it from PromptBytes.
	Room    int64
	Prompts int64 // prompts the engine runs (a completions batch); 0 means 1
	Choices int64 // completions per prompt, max(n, best_of); 0 means 1
	Async   bool
	Timeout time.Duration // how long the job may take in all
	// Limits are the principal's overrides (key over user), carried from
	// the verifier's cache: no lookup per request.
	Limits sluice.Limits
	// Period is the principal's subscription period label; empty: the
	// calendar month (by Redis's clock).
	Period string
	// NoCompletion: the engine generates nothing (embeddings): the
	// completion bound is 0 and the hold is the prompt bound alone.
	NoCompletion bool
	// ServiceTier is the job's (sluice.TierDefault when empty): its money
	// is held and charged at the model's price × the tier's factor
	// (config.ModelPrice.FactorPPM).
	ServiceTier string
	// Batch: a batch line. Funds are held as for any request, but the
	// tier's rpm, tpm and concurrency do not apply and nothing is counted
	// in them: batch lines have their own limits (batch.lines_per_minute,
	// lines_in_flight, taken by the driver before it admits a line).
	Batch bool
}

// Ticket is admission's answer: the rate-limit figures for the headers and
// whether a reservation (and a lease) was made.
type Ticket struct {
	JobID    string
	UserID   string
	Reserved bool // a hold and a lease exist: the job's end must settle
	// Hold is the hold's terms (bounds, prices, period, model; no amounts),
	// stored with the job (sluice.Job.Hold) so that its usage is charged at
	// these prices even by a settler that finds the hold itself gone.
	Hold   string
	limits limitState
	retry  time.Duration // for a refusal: when to try again (0: unknown or never)
}

type limitState struct {
	known             bool
	reqLimit, reqLeft int64 // -1: unlimited
	reqReset          time.Duration
	tokLimit, tokLeft int64
	tokReset          time.Duration
}

// Bounds returns the prompt bound and the completion bound admission holds.
func (a *Admitter) Bounds(r Request) (prompt, completion int64) {
	overhead := a.cfg.Admission.MessageOverheadTokens
	prompts := max(r.Prompts, 1)
	// Per message (chat) or per prompt (a batch: each is tokenized with its
	// own special tokens), the template's framing tokens.
	prompt = r.PromptBytes + r.ExtraTokens + overhead*(int64(r.Messages)+prompts)
	if r.NoCompletion {
		return prompt, 0
	}
	completion = r.MaxTokens
	if completion == 0 {
		completion = r.Room
	}
	if completion == 0 {
		floor := int64(max(a.cfg.Server.BytesPerTokenFloor, 1))
		completion = max(int64(r.Model.MaxModelLen)-r.PromptBytes/floor, 1)
	}
	// The engine generates max(n, best_of) completions for every prompt.
	return prompt, completion * max(r.Choices, 1) * prompts
}

// WorstExtra is the most a job with time limit timeout may cost beyond its
// tokens: the per-request price plus the GPU-second price for the whole
// limit (the engine cannot run a job past its deadline).
func WorstExtra(p config.ModelPrice, timeout time.Duration) int64 {
	return int64(p.PerRequest) + GPUCharge(max(timeout.Milliseconds(), 0), int64(p.PerGPUSecond))
}

func limit(q config.Quantity) int64 {
	if q.Kind == config.Fixed {
		return q.Count()
	}
	return -1 // unlimited ('custom' included tokens are unlimited too: billed by contract)
}

// Effective are the limits admission applies; -1 is unlimited, and
// OverageCap 0 allows no postpaid usage.
type Effective struct {
	RequestsPerMinute, TokensPerMinute, Concurrency int64
	OverageCap                                      int64 // micro-dollars per month
}

// Effective resolves a principal's limits: an override (key, then user)
// wins; else the tier's value, where 'custom' without an override means
// admission.custom's modest default. The per-user cap applies only where
// the tier allows postpaid usage at all.
func (a *Admitter) Effective(tier string, o sluice.Limits) Effective {
	return EffectiveLimits(a.cfg, tier, o)
}

// EffectiveLimits is Admitter.Effective for callers without an Admitter
// (the auth function checks a new key's limits against its owner's).
func EffectiveLimits(cfg *config.Config, tier string, o sluice.Limits) Effective {
	t, ok := cfg.Tiers[tier]
	if !ok {
		t = cfg.Tiers[sluice.TierFree]
	}
	cu := cfg.Admission.Custom
	pick := func(override int64, q config.Quantity, custom int64) int64 {
		switch {
		case override > 0:
			return override
		case q.Kind == config.Custom:
			return custom
		}
		return limit(q)
	}
	e := Effective{
		RequestsPerMinute: pick(o.RequestsPerMinute, t.RateLimit, cu.RequestsPerMinute),
		TokensPerMinute:   pick(o.TokensPerMinute, t.TokensPerMinute, cu.TokensPerMinute),
		Concurrency:       pick(o.Concurrency, t.Concurrency, cu.Concurrency),
	}
	if t.Overage == config.OveragePostpaid {
		e.OverageCap = int64(t.OverageCap)
		if o.OverageCap > 0 {
			e.OverageCap = o.OverageCap
		}
	}
	return e
}

func (a *Admitter) tier(name string) config.Tier {
	if t, ok := a.cfg.Tiers[name]; ok {
		return t
	}
	return a.cfg.Tiers[sluice.TierFree]
}

// CheckInput applies the tier's input limits.
func (a *Admitter) CheckInput(tier string, maxTokens int64) error {
	if t := a.tier(tier); t.MaxTokens > 0 && maxTokens > t.MaxTokens {
		return sluice.Invalid("max_tokens", sluice.CodeInvalidValue,
			"max_tokens is %d, but the %s tier allows at most %d.", maxTokens, tier, t.MaxTokens)
	}
	return nil
}

// Admit runs the admission script for r. It always returns a ticket (its
// headers belong on the response, refused or not); the error is the
// refusal: rate_limit_exceeded, insufficient_quota, or 503 when Redis is
// unreachable and admission fails closed.
func (a *Admitter) Admit(ctx context.Context, r Request) (*Ticket, error) {
	tk := &Ticket{JobID: r.JobID, UserID: r.UserID}
	if a.cfg.Admission.Disabled {
		return tk, nil
	}
	t := a.tier(r.Tier)
	lim := a.Effective(r.Tier, r.Limits)
	prompt, completion := a.Bounds(r)
	price := a.cfg.Pricing[r.Model.Name]
	holdFor := r.Timeout + a.cfg.Admission.HoldGrace
	leaseFor := a.cfg.Admission.LeaseTTL
	if r.Async { // nobody refreshes an async job's lease: it ends at settlement
		leaseFor = holdFor
	}
	if r.Batch { // unlimited dimensions keep no log; a 1 ms lease counts in no concurrency
		lim.RequestsPerMinute, lim.TokensPerMinute, lim.Concurrency = -1, -1, -1
		leaseFor = time.Millisecond
	}
	keys := rkey.User(r.UserID).Admit()
	args := []any{r.JobID, lim.RequestsPerMinute, lim.TokensPerMinute, lim.Concurrency,
		prompt, completion, int64(price.InputTokens), int64(price.OutputTokens), limit(t.IncludedCredits),
		lim.OverageCap, leaseFor.Milliseconds(), holdFor.Milliseconds(), r.Model.Name, window.Milliseconds(), r.Period,
		int64(price.PerRequest), int64(price.PerGPUSecond), WorstExtra(price, r.Timeout), tierTerm(r.ServiceTier, price)}
	lapsed := false
	lapse := func(res []any) bool { // holds are due to lapse: release those of jobs that never came to exist
		if due, _ := res[len(res)-1].(int64); due == 0 || lapsed || len(res) < 10 {
			return false
		}
		lapsed = true
		n, err := a.Lapse(ctx, r.UserID)
		if err != nil {
			a.log.WarnContext(ctx, "lapsing holds failed", slog.String("user_id", r.UserID), slog.String("err", err.Error()))
		}
		return n > 0
	}
	for attempt := 0; ; attempt++ {
		res, err := admitScript.Run(ctx, a.rdb, keys, args...).Slice()
		if err != nil {
			return tk, a.unavailable(ctx, tk, err)
		}
		outcome, _ := res[0].(string)
		detail, _ := res[1].(string)
		tk.parse(res)
		switch outcome {
		case "ok":
			lapse(res)
			tk.Reserved = true
			tk.Hold = fmt.Sprintf("%d|%d|%d|%d|0|0|0|%s|%s|%d|%d", prompt, completion, int64(price.InputTokens),
				int64(price.OutputTokens), detail, r.Model.Name, int64(price.PerRequest), int64(price.PerGPUSecond))
			if t := tierTerm(r.ServiceTier, price); t != "" {
				tk.Hold += "|" + t
			}
			return tk, nil
		case "load":
			if attempt > 0 {
				return tk, a.unavailable(ctx, tk, errors.New("admission: counters did not load"))
			}
			if err := a.load(ctx, r.UserID, detail); err != nil {
				return tk, err
			}
		case "quota":
			if lapse(res) { // funds came back: try again
				attempt--
				continue
			}
			if detail == "suspended" {
				return tk, &sluice.Error{Kind: sluice.KindQuota, Code: sluice.CodeInsufficientQuota,
					Message: "Your prepaid credit and postpaid usage are suspended while a payment dispute is open; please check your billing details."}
			}
			return tk, &sluice.Error{Kind: sluice.KindQuota, Code: sluice.CodeInsufficientQuota,
				Message: "You exceeded your current quota, please check your plan and billing details."}
		default:
			return tk, tk.refusal(detail, prompt+completion)
		}
	}
}

// parse reads the script's reply figures.
func (tk *Ticket) parse(res []any) {
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	ms := func(i int) time.Duration { return time.Duration(n(i)) * time.Millisecond }
	tk.retry = ms(2)
	tk.limits = limitState{known: true, reqLimit: n(3), reqLeft: n(4), reqReset: ms(5),
		tokLimit: n(6), tokLeft: n(7), tokReset: ms(8)}
}

func (tk *Ticket) refusal(which string, tokens int64) error {
	l := tk.limits
	var msg string
	switch which {
	case "requests":
		msg = fmt.Sprintf("Rate limit reached on requests per min (RPM): Limit %d, Used %d, Requested 1. Please try again in %s.",
			l.reqLimit, l.reqLimit-l.reqLeft, seconds(tk.retry))
	case "tokens":
		msg = fmt.Sprintf("Rate limit reached on tokens per min (TPM): Limit %d, Used %d, Requested %d. Please try again in %s.",
			l.tokLimit, l.tokLimit-l.tokLeft, tokens, seconds(tk.retry))
	case "tokens_max":
		msg = fmt.Sprintf("Request too large on tokens per min (TPM): Limit %d, Requested %d (prompt bound plus max_tokens). Lower max_tokens or shorten the prompt.",
			l.tokLimit, tokens)
	default:
		msg = fmt.Sprintf("Rate limit reached on concurrent requests. Please try again in %s.", seconds(tk.retry))
	}
	return &sluice.Error{Kind: sluice.KindRateLimited, Code: sluice.CodeRateLimitExceeded, Message: msg}
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s"
}

// unavailable decides what a Redis failure means: 503 (fail closed), or, if
// configured, an unlimited and uncharged admission.
func (a *Admitter) unavailable(ctx context.Context, tk *Ticket, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if a.cfg.Admission.FailOpen {
		a.log.WarnContext(ctx, "admission unavailable; admitting without limits (fail_open)", slog.String("err", err.Error()))
		return nil
	}
	return sluice.Unavailable("Admission control is unavailable (its Redis cannot be reached); the request was not run. Retry shortly.", err)
}

// load fills a user's live counters from the ledger (first use, or after
// Redis lost them).
func (a *Admitter) load(ctx context.Context, userID, period string) error {
	b, err := a.db.LedgerBalance(ctx, userID, period)
	if err != nil {
		return sluice.Unavailable("Admission control is unavailable; retry shortly.", err)
	}
	args := []any{period, b.CreditMicros, b.IncludedTokens, b.OverageMicros}
	for _, id := range b.GrantIDs {
		args = append(args, id)
	}
	n, err := loadScript.Run(ctx, a.rdb, []string{rkey.User(userID).Funds}, args...).Int64()
	if err != nil {
		return a.unavailable(ctx, &Ticket{}, err)
	}
	if n == 1 && b.OpenDisputes > 0 { // loaded afresh: an open dispute still suspends
		if err := Suspend(ctx, a.rdb, userID, true); err != nil {
			return a.unavailable(ctx, &Ticket{}, err)
		}
	}
	return nil
}

// WriteHeaders sets the x-ratelimit-* headers (and Retry-After on a
// refusal). Unlimited dimensions have no headers.
func (tk *Ticket) WriteHeaders(h http.Header, refused bool) {
	l := tk.limits
	if !l.known {
		return
	}
	set := func(kind string, lim, left int64, reset time.Duration) {
		if lim < 0 {
			return
		}
		h.Set("x-ratelimit-limit-"+kind, strconv.FormatInt(lim, 10))
		h.Set("x-ratelimit-remaining-"+kind, strconv.FormatInt(left, 10))
		h.Set("x-ratelimit-reset-"+kind, seconds(reset))
	}
	set("requests", l.reqLimit, l.reqLeft, l.reqReset)
	set("tokens", l.tokLimit, l.tokLeft, l.tokReset)
	if refused && tk.retry > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64(math.Ceil(tk.retry.Seconds())), 10))
		h.Set("retry-after-ms", strconv.FormatInt(tk.retry.Milliseconds(), 10))
	}
}

// KeepAlive keeps a synchronous request's lease alive until the returned
// Lease is released: the process's one keeper (lease.go) refreshes every
// live lease in one pipeline per tick. A process that dies stops
// refreshing, and the lease lapses within admission.lease_ttl. It returns
// nil (a Lease whose release does nothing) for a ticket without a lease.
func (a *Admitter) KeepAlive(_ context.Context, tk *Ticket) *Lease {
	if !tk.Reserved {
		return nil
	}
	l := &Lease{a: a, key: rkey.User(tk.UserID).Lease, job: tk.JobID}
	a.keeper.add(a, l)
	return l
}

// Release drops a hold whose job was never enqueued, charging nothing. The
// enqueue usually failed because Redis did, so it retries in the background
// for a while; a hold it cannot release lapses at its job's deadline plus
// admission.hold_grace.
func (a *Admitter) Release(ctx context.Context, tk *Ticket) {
	if tk == nil || !tk.Reserved {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	go func() {
		defer cancel()
		for wait := 100 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
			err := settleScript.Run(ctx, a.rdb, rkey.User(tk.UserID).Settle(), tk.JobID, 0, 0, 0, 0).Err()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				a.log.WarnContext(ctx, "release failed; the hold lapses later", slog.String("job_id", tk.JobID), slog.String("err", err.Error()))
				return
			}
			sluice.Sleep(ctx, wait)
		}
	}()
}

// ReleaseJob drops the hold of a job that was never enqueued, now, charging
// nothing; a job with no hold is left as it is. The batch driver calls it
// before it admits a line again after a crash: a hold left between admit
// and enqueue is given back first, never held twice.
func (a *Admitter) ReleaseJob(ctx context.Context, userID, jobID string) error {
	return settleScript.Run(ctx, a.rdb, rkey.User(userID).Settle(), jobID, 0, 0, 0, 0).Err()
}

// Lapse releases the holds past their lapse time whose jobs are gone (their
// submit died before enqueueing them) and returns how many it released. A
// hold whose job is still recorded never lapses: its job can still end and
// settle (late), and then the hold is what it is charged against.
func (a *Admitter) Lapse(ctx context.Context, userID string) (int64, error) {
	k := rkey.User(userID)
	keys := []string{k.Funds, k.Holds, k.HoldExp, k.Lease}
	due, err := lapseScript.Run(ctx, a.rdb, keys, "due").StringSlice()
	if err != nil || len(due) == 0 {
		return 0, err
	}
	pipe := a.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(due))
	for i, j := range due {
		if rkey.JobTag(j) != "" {
			exists[i] = redisq.JobExists(ctx, pipe, j)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var gone, live []any
	for i, j := range due {
		if exists[i] != nil && exists[i].Val() > 0 {
			live = append(live, j)
		} else {
			gone = append(gone, j)
		}
	}
	args := append(append([]any{"lapse", max(a.cfg.Admission.HoldGrace, time.Minute).Milliseconds(), len(gone)}, gone...), live...)
	return lapseScript.Run(ctx, a.rdb, keys, args...).Int64()
}

// Grant applies a prepaid grant (or a clawback, micros < 0) already in the
// ledger to the live balance, once per ledger row.
func Grant(ctx context.Context, rdb redis.UniversalClient, userID string, grantID, micros int64) error {
	return grantScript.Run(ctx, rdb, []string{rkey.User(userID).Funds}, grantID, micros).Err()
}

// Suspend suspends (on) or restores a user's prepaid credit and postpaid
// use in admission: while a card dispute is open, only included tokens
// admit new jobs.
func Suspend(ctx context.Context, rdb redis.UniversalClient, userID string, on bool) error {
	if on {
		return rdb.HSet(ctx, rkey.User(userID).Funds, "susp", 1).Err()
	}
	return rdb.HDel(ctx, rkey.User(userID).Funds, "susp").Err()
}

// Overheld lists the jobs whose credit holds the user's balance no longer
// backs (a refund or dispute took the credit back while they ran), the
// latest-ending first, as many as it takes for the rest to be backed: the
// caller cancels them, so that what they go on to use cannot drive the
// balance below zero. (What they used before they stop is still charged;
// past the balance it is an audited debt.)
func Overheld(ctx context.Context, rdb redis.UniversalClient, userID string) ([]string, error) {
	k := rkey.User(userID)
	pipe := rdb.Pipeline()
	fv := pipe.HMGet(ctx, k.Funds, "credit", "cr_held")
	hv := pipe.HGetAll(ctx, k.Holds)
	ev := pipe.ZRevRangeWithScores(ctx, k.HoldExp, 0, -1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	n := func(v any) int64 { s, _ := v.(string); x, _ := strconv.ParseInt(s, 10, 64); return x }
	f := fv.Val()
	if len(f) < 2 {
		return nil, nil
	}
	over := n(f[1]) - n(f[0]) // credit held past the balance
	var out []string
	for _, z := range ev.Val() {
		if over <= 0 {
			break
		}
		id, _ := z.Member.(string)
		h, err := ParseHold(hv.Val()[id])
		if err != nil || h.Credit <= 0 {
			continue
		}
		out = append(out, id)
		over -= h.Credit
	}
	return out, nil
}

// Live is a user's live counters as Redis holds them.
type Live struct {
	Loaded                                bool
	Period                                string
	Credit, IncludedUsed, OverageUsed     int64
	HeldIncluded, HeldCredit, HeldOverage int64
	Holds, Leases                         int64
}

// LiveCounters reads a user's live counters (for the CLI and the drill).
func LiveCounters(ctx context.Context, rdb redis.UniversalClient, userID string) (Live, error) {
	k := rkey.User(userID)
	v, err := rdb.HMGet(ctx, k.Funds, "init", "per", "credit", "inc_used", "ov_used", "inc_held", "cr_held", "ov_held").Result()
	if err != nil {
		return Live{}, err
	}
	n := func(i int) int64 { s, _ := v[i].(string); x, _ := strconv.ParseInt(s, 10, 64); return x }
	per, _ := v[1].(string)
	l := Live{Loaded: v[0] == "1", Period: per, Credit: n(2), IncludedUsed: n(3), OverageUsed: n(4),
		HeldIncluded: n(5), HeldCredit: n(6), HeldOverage: n(7)}
	l.Holds, _ = rdb.HLen(ctx, k.Holds).Result()
	l.Leases, _ = rdb.ZCard(ctx, k.Lease).Result()
	return l, nil
}

// Holds lists a user's holds: job id → when the hold lapses if its job never
// settles (for the CLI and the drill).
func Holds(ctx context.Context, rdb redis.UniversalClient, userID string) (map[string]time.Time, error) {
	zs, err := rdb.ZRangeWithScores(ctx, rkey.User(userID).HoldExp, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		id, _ := z.Member.(string)
		out[id] = time.UnixMilli(int64(z.Score))
	}
	return out, nil
}
