package admission_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// observed wires real telemetry to b.a and returns its registry.
func (b *bundle) observed(t *testing.T) *prometheus.Registry {
	t.Helper()
	tel, err := telemetry.New(context.Background(), config.Telemetry{}, slog.New(slog.NewTextHandler(io.Discard, nil)), telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tel.InitModels([]string{b.model})
	b.a.Observe(tel)
	return tel.Registry
}

// metric reads a counter of model from reg.
func metric(t *testing.T, reg *prometheus.Registry, name, model string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" && l.GetValue() == model {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{model=%q} not exported", name, model)
	return 0
}

// grant gives user micros of prepaid credit (ledger and live counters).
func (b *bundle) grant(t *testing.T, user string, micros int64) {
	t.Helper()
	ctx := context.Background()
	id, err := b.db.LedgerGrant(ctx, user, sluice.CalendarPeriod(time.Now()), micros, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, b.rdb, user, id, micros); err != nil {
		t.Fatal(err)
	}
}

// run takes an admitted job through the real queue: enqueued with its
// hold's terms, claimed, started and completed with usage u. It returns the
// queue.
func (b *bundle) run(t *testing.T, tk *admission.Ticket, u sluice.Usage) *redisq.Queue {
	t.Helper()
	q := b.enqueue(t, tk)
	b.finish(t, q, tk, u)
	return q
}

// enqueue stores an admitted job in the real queue with its hold's terms.
func (b *bundle) enqueue(t *testing.T, tk *admission.Ticket) *redisq.Queue {
	t.Helper()
	ctx := context.Background()
	q := redisq.New(b.rdb, redisq.Options{})
	if err := q.EnsureGroup(ctx, rkey.StreamKey(b.model, 0), rkey.GroupWorkers); err != nil {
		t.Fatal(err)
	}
	j := &sluice.Job{ID: tk.JobID, UserID: tk.UserID, Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Reserved: tk.Reserved, Hold: tk.Hold}
	if err := q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return q
}

// finish claims, starts and completes an enqueued job with usage u.
func (b *bundle) finish(t *testing.T, q *redisq.Queue, tk *admission.Ticket, u sluice.Usage) {
	t.Helper()
	ctx := context.Background()
	es, _, err := q.Claim(ctx, rkey.GroupWorkers, "w", b.model, 1, 1, false)
	if err != nil || len(es) != 1 {
		t.Fatalf("claim: %v %v", es, err)
	}
	if out, _, err := q.Start(ctx, es[0], rkey.GroupWorkers, "w", b.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{}`),
		Usage: &sluice.UsageEvent{JobID: tk.JobID, UserID: tk.UserID, Model: b.model, Usage: u}}
	if ok, err := q.Complete(ctx, rkey.GroupWorkers, es[0], o); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
}

// settle runs a settler (as every process does) until the ledger holds a
// row for each job, or fails after a while.
func (b *bundle) settle(t *testing.T, user string, jobs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.a.Settler(testName()).Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND job_id = ANY($2)`, user, jobs).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		// The ledger row is written before settle.lua releases the hold:
		// settled means both.
		held := 0
		if n == len(jobs) {
			hs, err := admission.Holds(ctx, b.rdb, user)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				if _, ok := hs[j]; ok {
					held++
				}
			}
			// And the batch acked: the settler gives the job records
			// their expiry before it acks, and stopping it in between
			// leaves that to a later settler (none, in a test).
			if held == 0 && b.settlePending(t) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs settled in the ledger, %d still held, %d settle entries unacked", n, len(jobs), held, b.settlePending(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settlePending counts the settle entries read but not yet acked.
func (b *bundle) settlePending(t *testing.T) int64 {
	t.Helper()
	var n int64
	for _, k := range rkey.PerTag(b.cfg.QueueModels(), b.cfg.Jobs.Shards, rkey.SettleKey) {
		p, err := b.rdb.XPending(context.Background(), k, rkey.GroupSettle).Result()
		if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
			t.Fatal(err)
		}
		if p != nil {
			n += p.Count
		}
	}
	return n
}

func testName() string { return rkey.NewJobID("settler") }

type ledgerRow struct {
	credit, overage, included, debt, excess int64
	unheld                                  bool
}

func (b *bundle) row(t *testing.T, job string) ledgerRow {
	t.Helper()
	var r ledgerRow
	err := b.db.Pool.QueryRow(context.Background(), `SELECT credit_micros, overage_micros, included_tokens, debt_micros, excess_tokens, unheld
		FROM credit_ledger WHERE job_id = $1`, job).Scan(&r.credit, &r.overage, &r.included, &r.debt, &r.excess, &r.unheld)
	if err != nil {
		t.Fatalf("ledger row of %s: %v", job, err)
	}
	return r
}

// Nothing produced goes unbilled: usage past the hold (the engine counted
// more than admission's bound) is charged all the same, from what the
// balance has free; what nothing covers is an audited debt. Both are
// counted by the settlement metrics the alerts watch.
func TestExcessBeyondHoldIsCharged(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	reg := b.observed(t)
	ctx := context.Background()

	// 1000 credit; the hold is 46. The engine reports 200 prompt and 50
	// completion tokens (bounds 26 and 10): 200 + 100 = 300 micro-dollars.
	rich := b.user(t, "free")
	b.grant(t, rich, 1000)
	tk, err := b.a.Admit(ctx, b.req(rich, "free"))
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, tk, sluice.Usage{PromptTokens: 200, CompletionTokens: 50})
	b.settle(t, rich, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -300 || r.debt != 0 || r.excess != 174+40 {
		t.Fatalf("ledger row %+v, want credit -300, no debt, 214 excess tokens", r)
	}
	bal, _ := b.db.LedgerBalance(ctx, rich, sluice.CalendarPeriod(time.Now()))
	live, _ := admission.LiveCounters(ctx, b.rdb, rich)
	if bal.CreditMicros != 700 || live.Credit != 700 || live.HeldCredit != 0 {
		t.Fatalf("after the excess: ledger %d, live %+v; want 700 left", bal.CreditMicros, live)
	}
	if v := metric(t, reg, "sluice_settlement_excess_tokens_total", b.model); v != 214 {
		t.Fatalf("sluice_settlement_excess_tokens_total = %v, want 214", v)
	}

	// 100 credit: the same usage costs 300, 200 of it past every source.
	poor := b.user(t, "free")
	b.grant(t, poor, 100)
	tk, err = b.a.Admit(ctx, b.req(poor, "free"))
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, tk, sluice.Usage{PromptTokens: 200, CompletionTokens: 50})
	b.settle(t, poor, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -300 || r.debt != 200 {
		t.Fatalf("ledger row %+v, want credit -300 with 200 of it debt", r)
	}
	live, _ = admission.LiveCounters(ctx, b.rdb, poor)
	if live.Credit != -200 {
		t.Fatalf("live credit %d, want -200 (the debt)", live.Credit)
	}
	var audited int
	b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE target = $1 AND outcome = 'debt'
		AND (detail->>'debt_micros')::bigint = 200`, tk.JobID).Scan(&audited) //nolint:errcheck // 0 fails below
	if audited != 1 {
		t.Fatalf("audit entries for the debt: %d, want 1", audited)
	}
	if v := metric(t, reg, "sluice_settlement_debt_micros_total", b.model); v != 200 {
		t.Fatalf("sluice_settlement_debt_micros_total = %v, want 200", v)
	}
	// In debt, nothing more is admitted.
	if _, err := b.a.Admit(ctx, b.req(poor, "free")); sluice.KindOf(err) != sluice.KindQuota {
		t.Fatalf("admit in debt = %v, want insufficient_quota", err)
	}
}

// Finding 6: a hold due to lapse (its job ran past deadline + hold_grace)
// is not released while its job is recorded, so the job's late settlement
// is charged; and a job whose hold is gone anyway is charged at the prices
// its hold was taken at.
func TestLateSettlementIsBilled(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	reg := b.observed(t)
	ctx := context.Background()
	user := b.user(t, "free")
	b.grant(t, user, 46) // one hold's worth
	tk, err := b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	// The job is enqueued and runs long: its hold falls due to lapse.
	q := b.enqueue(t, tk)
	holdExp := "sluice:{u:" + user + "}:holdexp"
	b.rdb.ZAdd(ctx, holdExp, redisZ(tk.JobID))
	// The user's next admission (which lapses due holds) must not free
	// the running job's funds.
	if _, err := b.a.Admit(ctx, b.req(user, "free")); sluice.KindOf(err) != sluice.KindQuota {
		t.Fatalf("second admission = %v, want insufficient_quota (the first job still holds the credit)", err)
	}
	b.finish(t, q, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7}) // 34
	b.settle(t, user, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -34 || r.debt != 0 || r.unheld {
		t.Fatalf("late settlement row %+v, want -34 against its hold", r)
	}

	// A hold that is gone (lost with Redis, or released by an older
	// instance) still leaves its job charged, from the job's record.
	b.grant(t, user, 100)
	tk, err = b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.HDel(ctx, "sluice:{u:"+user+"}:holds", tk.JobID)
	b.rdb.HIncrBy(ctx, "sluice:{u:"+user+"}:funds", "cr_held", -46)
	b.run(t, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7})
	b.settle(t, user, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -34 || !r.unheld {
		t.Fatalf("settlement without a hold: row %+v, want -34, unheld", r)
	}
	live, _ := admission.LiveCounters(ctx, b.rdb, user)
	if live.Credit != 46-34+100-34 || live.HeldCredit != 0 {
		t.Fatalf("live %+v, want credit %d", live, 46-34+100-34)
	}
	if v := metric(t, reg, "sluice_settlement_unheld_total", b.model); v != 1 {
		t.Fatalf("sluice_settlement_unheld_total = %v, want 1", v)
	}
	// Settling again (a redelivered entry) charges nothing more.
	if err := b.a.Settle(ctx, tk.JobID, user); err != nil {
		t.Fatal(err)
	}
	if again, _ := admission.LiveCounters(ctx, b.rdb, user); again.Credit != live.Credit {
		t.Fatalf("a second settlement moved credit %d → %d", live.Credit, again.Credit)
	}
}

// Finding 6: a job hash gone before its settlement (expired after
// jobs.result_ttl, or erased) still settles its real usage: the settle
// entry carries what settlement needs.
func TestSettlesAfterJobHashGone(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	ctx := context.Background()
	user := b.user(t, "free")
	b.grant(t, user, 1000)
	tk, err := b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7})
	b.rdb.Del(ctx, rkey.JobKey(tk.JobID)) // 24 h later, before any settler ran
	b.settle(t, user, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -34 {
		t.Fatalf("row %+v, want -34", r)
	}
	live, _ := admission.LiveCounters(ctx, b.rdb, user)
	if live.Credit != 1000-34 || live.Holds != 0 {
		t.Fatalf("live %+v, want credit %d and no hold", live, 1000-34)
	}
}

// redisZ is a sorted-set member due at once.
func redisZ(member string) redis.Z { return redis.Z{Score: 0, Member: member} }

// A hold whose job never came to exist (its submit died before enqueueing)
// still lapses, at the user's next admission once it is due.
func TestOrphanHoldLapses(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	ctx := context.Background()
	user := b.user(t, "free")
	b.grant(t, user, 46*3)
	orphan, err := b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.ZAdd(ctx, "sluice:{u:"+user+"}:holdexp", redisZ(orphan.JobID))
	if _, err := b.a.Admit(ctx, b.req(user, "free")); err != nil {
		t.Fatal(err)
	}
	hs, _ := admission.Holds(ctx, b.rdb, user)
	if _, held := hs[orphan.JobID]; held || len(hs) != 1 {
		t.Fatalf("holds %v: the orphan's should have lapsed", hs)
	}
	if live, _ := admission.LiveCounters(ctx, b.rdb, user); live.HeldCredit != 46 {
		t.Fatalf("held credit %d, want 46 (the new job's only)", live.HeldCredit)
	}
}

// Issue 13, gap 2: settlers down longer than jobs.result_ttl. A reserved
// job's record is kept from its end until its settlement is done, so its
// hold does not lapse meanwhile and it settles from its hold; once settled,
// the record expires after jobs.result_ttl. A job without a hold keeps its
// expiry as before.
func TestRecordOutlivesSettlerOutage(t *testing.T) {
	t.Parallel()
	// Long enough to outlast the settle helper's return (its settler may
	// sit out a one-second blocking read before it stops).
	const ttl = 2 * time.Second
	b := setupPriced(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n", "jobs:\n  result_ttl: 2s\n")
	ctx := context.Background()
	user := b.user(t, "free")
	b.grant(t, user, 100)
	tk, err := b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	q := redisq.New(b.rdb, redisq.Options{ResultTTL: ttl})
	if err := q.EnsureGroup(ctx, rkey.StreamKey(b.model, 0), rkey.GroupWorkers); err != nil {
		t.Fatal(err)
	}
	enqueue := func(tk *admission.Ticket) {
		j := &sluice.Job{ID: tk.JobID, UserID: tk.UserID, Model: b.model, Endpoint: sluice.EndpointChat,
			Body: json.RawMessage(`{"model":"x"}`), Reserved: tk.Reserved, Hold: tk.Hold}
		if err := q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// No settler runs: the job ends, and stays unsettled past the TTL.
	enqueue(tk)
	b.finish(t, q, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7}) // 34
	time.Sleep(ttl + 500*time.Millisecond)
	if n, _ := b.rdb.Exists(ctx, rkey.JobKey(tk.JobID)).Result(); n != 1 {
		t.Fatal("the ended job's record expired before its settlement")
	}
	// Its hold falls due; the user's next admission runs the lapse.
	b.rdb.ZAdd(ctx, "sluice:{u:"+user+"}:holdexp", redisZ(tk.JobID))
	if _, err := b.a.Admit(ctx, b.req(user, "free")); err != nil {
		t.Fatal(err)
	}
	if hs, _ := admission.Holds(ctx, b.rdb, user); len(hs) != 2 {
		t.Fatalf("holds %v: the unsettled job's hold lapsed", hs)
	}
	// A settler comes back: the job settles from its hold.
	b.settle(t, user, tk.JobID)
	if r := b.row(t, tk.JobID); r.credit != -34 || r.debt != 0 || r.unheld {
		t.Fatalf("row %+v, want -34 from its hold", r)
	}
	// Settled, the record expires after the TTL. (20 s: under a loaded
	// make test the settler's TTL write has taken more than 5 s to land.)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, _ := b.rdb.PTTL(ctx, rkey.JobKey(tk.JobID)).Result()
		if ms > 0 && ms <= ttl {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("settled job record's ttl %v, want at most %v", ms, ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(ttl + 200*time.Millisecond)
	if n, _ := b.rdb.Exists(ctx, rkey.JobKey(tk.JobID)).Result(); n != 0 {
		t.Fatal("the settled job's record outlived jobs.result_ttl")
	}
	// A job without a hold keeps the TTL from its end.
	free := &admission.Ticket{JobID: rkey.NewJobID(b.model), UserID: user}
	enqueue(free)
	b.finish(t, q, free, sluice.Usage{PromptTokens: 1, CompletionTokens: 1})
	if ms, _ := b.rdb.PTTL(ctx, rkey.JobKey(free.JobID)).Result(); ms <= 0 || ms > ttl {
		t.Fatalf("unreserved job record's ttl %v, want at most %v", ms, ttl)
	}
}
