package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Settler turns ended jobs' holds into charges. Every terminal path of a
// reserved job (completion, cancel, expiry, dead-letter, interruption) adds
// the job to its model tag's settle stream in the same script that ends it;
// any number of settlers (one runs in every process that calls app.Start)
// share the stream through a consumer group, and an entry claimed by a
// process that died is taken over after admission.settle_idle.
//
// Settling one job: read its hold (gone: settled already), read its usage
// from the job hash, split it (Hold.Split), append the ledger row (unique
// by job id), then settle.lua (a no-op if the hold is gone), then ack. A
// crash between steps repeats them, and each is idempotent.
type Settler struct {
	a    *Admitter
	name string
}

// Settler returns a settler consuming as name.
func (a *Admitter) Settler(name string) *Settler { return &Settler{a: a, name: name} }

// Run settles until ctx ends: batches of up to 100 ended jobs from the
// models' settle streams, acked only after SettleMany succeeded (a failed
// batch stays pending and is reclaimed after admission.settle_idle, by this
// settler or another).
func (s *Settler) Run(ctx context.Context) {
	if s.a.cfg.Admission.Disabled {
		return
	}
	models := s.a.cfg.QueueModels() // adapters settle on their own streams
	idle := s.a.cfg.Admission.SettleIdle
	c := redisq.NewConsumer(s.a.rdb, redisq.ConsumerOptions{Group: rkey.GroupSettle, Name: s.name,
		Streams: rkey.PerTag(models, s.a.cfg.Jobs.Shards, rkey.SettleKey), Count: 100, Block: time.Second,
		ClaimIdle: idle, ClaimEvery: idle / 2, Linger: s.a.cfg.Admission.SettleLinger}, s.a.log)
	c.Run(ctx, func(ctx context.Context, msgs []redisq.Message) { s.settle(ctx, c, msgs) })
}

// settle settles one batch of settle entries and acks them.
func (s *Settler) settle(ctx context.Context, c *redisq.Consumer, msgs []redisq.Message) {
	log := s.a.log
	ended := make([]Ended, len(msgs))
	for i, m := range msgs {
		ended[i] = Ended{JobID: m.Field("job"), UserID: m.Field("user"), Hold: m.Field("hold"), Usage: m.Field("usage"),
			EngineMS: m.Field("engine_ms"), Cache: m.Field("cache")}
	}
	if err := s.a.SettleMany(ctx, ended); err != nil {
		if len(msgs) > 1 && sluice.AsError(err).Kind == sluice.KindInvalid {
			// One entry the database refuses (say, its user's row is
			// gone) must not hold up the others settled with it: settle
			// them one by one, leaving only the refused one pending.
			log.WarnContext(ctx, "settlement of a batch refused; settling its jobs one by one",
				slog.Int("jobs", len(ended)), slog.String("err", err.Error()))
			for i := range msgs {
				s.settle(ctx, c, msgs[i:i+1])
			}
			return
		}
		log.WarnContext(ctx, "settlement failed; it will be retried", slog.Int("jobs", len(ended)), slog.String("err", err.Error()))
		sluice.Sleep(ctx, time.Second)
		return // left pending: reclaimed after settle_idle
	}
	// The job records, kept while their settlement was pending, now
	// expire after jobs.result_ttl (erased accounts' go at once); before
	// the ack, so a crash in between leaves the entry to settle again
	// (idempotently), not a record that never expires.
	ids := make([]string, len(ended))
	for i, e := range ended {
		ids[i] = e.JobID
	}
	if err := redisq.Settled(ctx, s.a.rdb, ids, s.a.cfg.Jobs.ResultTTL); err != nil {
		log.WarnContext(ctx, "settled job records not given their expiry; the entries settle again", slog.String("err", err.Error()))
		sluice.Sleep(ctx, time.Second)
		return // left pending: reclaimed after settle_idle
	}
	c.Ack(ctx, msgs...) //nolint:errcheck // a lost ack repeats an idempotent settlement
}

// Ended is a job whose end awaits settlement. Hold, Usage, EngineMS and
// Cache are what its settle entry carried (settle_event.lua): settlement
// reads them where the job hash is gone (expired, or erased with its
// account) before its settlement.
type Ended struct {
	JobID, UserID                string
	Hold, Usage, EngineMS, Cache string
}

// Settle charges one ended job's real usage against its hold, once.
func (a *Admitter) Settle(ctx context.Context, jobID, userID string) error {
	return a.SettleMany(ctx, []Ended{{JobID: jobID, UserID: userID}})
}

// room reads what a user's live counters have free beyond the holds.
func room(v []any, h Hold) Room {
	n := func(i int) (int64, bool) {
		s, ok := v[i].(string)
		x, err := strconv.ParseInt(s, 10, 64)
		return x, ok && err == nil
	}
	credit, _ := n(0)
	crHeld, _ := n(1)
	r := Room{CreditFree: credit - crHeld}
	if per, _ := v[8].(string); per != h.Period {
		return r // the period is over: its included tokens and overage are closed
	}
	incUsed, _ := n(2)
	incHeld, _ := n(3)
	ovUsed, _ := n(4)
	ovHeld, _ := n(5)
	if lim, ok := n(6); ok {
		r.Included = -1
		if lim >= 0 {
			r.Included = max(lim-incUsed-incHeld, 0)
		}
	}
	if ovCap, ok := n(7); ok && ovCap > 0 {
		r.Overage = max(ovCap-ovUsed-ovHeld, 0)
	}
	return r
}

// SettleMany settles a batch of ended jobs in three round trips: read the
// holds, usages and live counters (one pipeline), append their ledger rows
// (one statement), apply settle.lua to each (one pipeline). Each step is
// idempotent, so a batch cut short by a crash is simply settled again.
// Jobs whose usage goes past their holds settle after the batch, one by
// one, once their holds have grown (grow).
//
// A job whose hold is gone was either settled before or lost its hold (it
// lapsed, or Redis lost it): it is charged from its recorded usage at the
// prices the hold was taken at (the job's hold terms), against a hold
// created for it, unless the ledger already has its row (settleUnheld).
func (a *Admitter) SettleMany(ctx context.Context, ended []Ended) error {
	return a.settleMany(ctx, ended, true)
}

// fundsFields are the funds hash fields room reads, in its order (grow.lua
// answers 'short' with the same).
var fundsFields = []string{"credit", "cr_held", "inc_used", "inc_held", "ov_used", "ov_held", "inc_lim", "ov_cap", "per"}

// pastHold is a job whose usage goes past its hold, or whose hold is gone:
// it settles after its hold is grown, or one is created for it (grow.lua).
type pastHold struct {
	e        Ended
	hs       string // its hold as read; unheld: its terms (the hold it was admitted with, no amounts)
	h        Hold   // as settlement prices it
	u        sluice.Usage
	engineMS int64
	cache    bool
	noHold   bool // no hold was read: one is created from its terms (hs)
}

func (a *Admitter) settleMany(ctx context.Context, ended []Ended, mayGrow bool) error {
	pipe := a.rdb.Pipeline()
	holds := make([]*redis.StringCmd, len(ended))
	usages := make([]*redis.SliceCmd, len(ended))
	funds := make([]*redis.SliceCmd, len(ended))
	for i, e := range ended {
		if e.JobID == "" || e.UserID == "" || rkey.JobTag(e.JobID) == "" {
			continue
		}
		holds[i] = pipe.HGet(ctx, rkey.User(e.UserID).Holds, e.JobID)
		usages[i] = redisq.JobSettleInputs(ctx, pipe, e.JobID)
		funds[i] = pipe.HMGet(ctx, rkey.User(e.UserID).Funds, fundsFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	type settlement struct {
		e      Ended
		c      Charge
		tokens int64
		unheld bool
		period string
	}
	var todo []settlement
	var past, unheldJobs []pastHold
	var rows []postgres.LedgerEntry
	rooms := map[string]*Room{} // per user: what this batch left free
	for i, e := range ended {
		if holds[i] == nil {
			continue
		}
		// What the job recorded; the settle entry's copy where the hash is gone.
		rec := []string{e.Usage, e.Cache, e.EngineMS, e.Hold}
		if in, err := redisq.ParseSettleInputs(usages[i]); err == nil {
			for k, s := range []string{in.Usage, in.Cache, in.EngineMS, in.Hold} {
				if s != "" {
					rec[k] = s
				}
			}
		}
		unheld := false
		hs, err := holds[i].Result()
		if errors.Is(err, redis.Nil) { // settled before, or the hold was lost
			a.rdb.ZRem(ctx, rkey.User(e.UserID).Lease, e.JobID) //nolint:errcheck // the lease may linger
			if rec[3] == "" {
				continue // no terms recorded (an older submit): nothing to charge at
			}
			hs, unheld = rec[3], true
		}
		h, err := ParseHold(hs)
		if err != nil {
			a.log.ErrorContext(ctx, "unreadable hold left to lapse", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
			continue
		}
		if unheld { // nothing is held for it any more
			h.Included, h.Credit, h.Overage = 0, 0, 0
		}
		// The cached-prompt price as configured now (the hold string has
		// none); Split never lets it exceed the input price held.
		h.CachedPrice = CachedPrice(a.cfg.Pricing[h.Model])
		var u sluice.Usage
		var engineMS int64 // the worker's engine time; absent: none (cancelled before it ran, cache, older worker)
		kind := "usage"
		if rec[2] != "" {
			engineMS, _ = strconv.ParseInt(rec[2], 10, 64)
		}
		if rec[0] != "" {
			if err := json.Unmarshal([]byte(rec[0]), &u); err != nil {
				a.log.ErrorContext(ctx, "unreadable usage; settled as none", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
			}
		}
		if rec[1] == "1" { // served from the cache: its own price, no included tokens
			kind = "cache"
			p := int64(a.cfg.Pricing[h.Model].CachedResponse)
			h.InputPrice, h.OutputPrice, h.Included = p, p, 0
			h.RequestPrice, h.GPUPrice, engineMS = 0, 0, 0 // no GPU ran it
			u.CachedTokens = 0                             // nor its prefix cache: every token at the cache's price
		}
		r, ok := rooms[e.UserID]
		if !ok {
			v, _ := funds[i].Result()
			if len(v) < 9 {
				v = make([]any, 9)
			}
			r0 := room(v, h)
			r = &r0
			rooms[e.UserID] = r
		}
		var c Charge
		if unheld {
			if mayGrow {
				// What it takes comes from the free room: taken atomically
				// too (a hold created for it), under the user's lock.
				unheldJobs = append(unheldJobs, pastHold{e, hs, h, u, engineMS, kind == "cache", true})
				continue
			}
			c = h.SplitUsage(u, engineMS, *r)
		} else {
			// Within its hold, a job takes nothing from the free room (its
			// credit counts only as far as the balance backs it).
			c = h.SplitUsage(u, engineMS, Room{CreditFree: min(r.CreditFree, 0)})
			if c.Debt > 0 && !h.Grown && mayGrow {
				// Past the hold: its hold grows first (what is free, taken
				// atomically), then it settles against the grown hold.
				past = append(past, pastHold{e, hs, h, u, engineMS, kind == "cache", false})
				continue
			}
		}
		// The next job of the user in this batch sees the counters as this
		// settlement leaves them: its hold released, its charge applied.
		if r.Included >= 0 {
			r.Included = max(r.Included+h.Included-c.Included, 0)
		}
		r.Overage = max(r.Overage+h.Overage-c.Overage, 0)
		r.CreditFree += h.Credit - c.Credit - c.Debt
		lost := unheld || h.Lost // its ledger row says it settled without the hold it was admitted with
		if c.Excess > 0 || c.Debt > 0 || lost {
			a.log.WarnContext(ctx, "settled past the hold", slog.String("job_id", e.JobID), slog.Int64("excess_tokens", c.Excess),
				slog.Int64("debt_micros", c.Debt), slog.Bool("unheld", lost), slog.Int64("prompt_tokens", u.PromptTokens),
				slog.Int64("prompt_bound", h.PromptBound))
		}
		tokens := u.PromptTokens + u.CompletionTokens
		todo = append(todo, settlement{e, c, tokens, unheld, h.Period})
		if tokens > 0 || c.Credit+c.Overage+c.Debt > 0 {
			rows = append(rows, postgres.LedgerEntry{UserID: e.UserID, Kind: kind, JobID: e.JobID, Period: h.Period, Model: h.Model,
				PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
				IncludedTokens: c.Included, CreditMicros: c.Credit, OverageMicros: c.Overage,
				DebtMicros: c.Debt, ExcessTokens: c.Excess, Unheld: lost, ServiceTier: ledgerTier(h),
				CachedTokens: c.Cached, CachedSavedMicros: c.CachedSaved})
		}
	}
	written, err := a.db.LedgerSettled(ctx, rows)
	if err != nil {
		return err
	}
	fresh := make(map[string]bool, len(written))
	for _, j := range written {
		fresh[j] = true
	}
	for _, r := range rows {
		if fresh[r.JobID] && a.obs != nil && (r.ExcessTokens > 0 || r.DebtMicros > 0 || r.Unheld) {
			a.obs.Settled(r.Model, r.ExcessTokens, r.DebtMicros, r.Unheld)
		}
	}
	// A job settled without its hold changes the live counters only with
	// its ledger row: once.
	kept := todo[:0]
	for _, s := range todo {
		if !s.unheld || fresh[s.e.JobID] {
			kept = append(kept, s)
		}
	}
	todo = kept
	args := func(s settlement) []any {
		return []any{s.e.JobID, s.c.Included, s.c.Credit + s.c.Debt, s.c.Overage, s.tokens, b2s(s.unheld), s.period}
	}
	run := func(s settlement) error {
		keys := rkey.User(s.e.UserID).Settle()
		return a.dur.Do(ctx, keys[0], func(c redis.Cmdable) error { return settleScript.Run(ctx, c, keys, args(s)...).Err() })
	}
	// The charges must survive a failover before their settle entries are
	// acked (the ack is on another master, so it could outlive a charge that
	// the promoted replica never had, and the hold would lapse unpaid): with
	// WAIT on, each master's share runs on one pinned connection and waits
	// for replicas.
	keys := make([]string, len(todo))
	for i, s := range todo {
		keys[i] = rkey.User(s.e.UserID).Settle()[0]
	}
	cmdErrs := a.dur.Pipelined(ctx, keys, func(p redis.Pipeliner, i int) redis.Cmder {
		s := todo[i]
		return settleScript.EvalSha(ctx, p, rkey.User(s.e.UserID).Settle(), args(s)...)
	})
	var errs []error
	for i, err := range cmdErrs {
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			err = run(todo[i])
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range past {
		if err := a.grow(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range unheldJobs {
		if err := a.settleUnheld(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// grow settles a job whose usage goes past its hold: what it takes beyond
// the hold (included tokens, overage, credit: Hold.Split with the room the
// counters have free) is added to its hold by grow.lua, all or nothing
// against the counters as they are at that instant (on a shortfall it
// splits again with the counters grow.lua returned; after a few tries it
// takes what is free and the rest is debt). Then the job settles against
// the grown hold, with no further room. Two settlers (or a settler and an
// admission) can therefore never hand out the same free room, and a crash
// after growing replays to the same charge.
func (a *Admitter) grow(ctx context.Context, p pastHold) error {
	k := rkey.User(p.e.UserID)
	v, err := a.rdb.HMGet(ctx, k.Funds, fundsFields...).Result()
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		if len(v) < len(fundsFields) {
			v = make([]any, len(fundsFields))
		}
		r := room(v, p.h)
		if p.cache {
			r.Included = 0 // a cached response is not paid with included tokens
		}
		c := p.h.SplitUsage(p.u, p.engineMS, r)
		expect, terms := p.hs, ""
		if p.noHold {
			expect, terms = "", p.hs
		}
		res, err := growScript.Run(ctx, a.rdb, []string{k.Funds, k.Holds}, p.e.JobID, expect,
			max(c.Included-p.h.Included, 0), max(c.Credit-p.h.Credit, 0), max(c.Overage-p.h.Overage, 0),
			p.h.Period, b2s(try < 8), terms).Slice()
		if err != nil {
			return err
		}
		switch out, _ := res[0].(string); out {
		case "short":
			v = res[1:]
			continue
		case "changed": // settled, grown or created by another settler meanwhile
			// A hold gone meanwhile may have lapsed: once more, settled
			// without it (never again from here).
			return a.settleMany(ctx, []Ended{p.e}, !p.noHold)
		}
		return a.settleMany(ctx, []Ended{p.e}, false)
	}
}

// settleUnheld settles a job whose hold is gone (lost with Redis, or lapsed
// while its record was gone): what it takes from the free room is taken
// atomically by creating a hold for it (grow.lua from its terms, marked
// lost), and it then settles against that hold like any other. Creating a
// hold for a job settled before would charge it twice, so this runs under
// the user's settle lock, between a check that the hold is still gone and
// one that the ledger has no row for the job: a settlement completes its
// ledger row before it removes the hold, so a job settled before is seen,
// and a hold created here by a settler that then died is found held by the
// next attempt and settled once (its ledger row, if written, is its own).
func (a *Admitter) settleUnheld(ctx context.Context, p pastHold) error {
	k := rkey.User(p.e.UserID)
	b := make([]byte, 8)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	token := hex.EncodeToString(b)
	for try := 0; ; try++ {
		ok, err := a.rdb.SetNX(ctx, k.SettleLock, token, settleLockTTL).Result()
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if try == 100 {
			return errors.New("admission: the user's settle lock stays taken")
		}
		sluice.Sleep(ctx, 50*time.Millisecond)
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), a.rdb, []string{k.SettleLock}, token) //nolint:errcheck // else it lapses
	_, err := a.rdb.HGet(ctx, k.Holds, p.e.JobID).Result()
	if err == nil { // held after all (created by a settler that died): settled as held
		return a.settleMany(ctx, []Ended{p.e}, false)
	}
	if !errors.Is(err, redis.Nil) {
		return err
	}
	done, err := a.db.LedgerHasJob(ctx, p.e.JobID)
	if err != nil || done {
		return err // settled before: nothing more
	}
	return a.grow(ctx, p)
}

// settleLockTTL bounds how long a settler that died holds a user's settle
// lock; one settlement takes a few round trips.
const settleLockTTL = 30 * time.Second

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// ConsumerName is a settle-stream consumer name unique to this process.
func ConsumerName(base string) string {
	if base == "" {
		base, _ = os.Hostname()
	}
	b := make([]byte, 4)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return fmt.Sprintf("%s-%d-%s", base, os.Getpid(), hex.EncodeToString(b))
}

// ledgerTier is what a ledger row says of the job's service tier: empty at
// the base price.
func ledgerTier(h Hold) string {
	if h.Tier == sluice.TierDefault {
		return ""
	}
	return h.Tier
}
