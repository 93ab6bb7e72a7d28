package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// inference is the submit side of a test: a model priced at 1 micro-dollar
// per prompt token and $1 per completion token (so a job with max_tokens 4
// holds 4,000,026 micro-dollars), its admitter and its queue.
type inference struct {
	cfg   *config.Config
	model string
	adm   *admission.Admitter
	q     *redisq.Queue
}

func newInference(t *testing.T, e *env) *inference {
	t.Helper()
	model := redistest.Name("claw")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - name: %[1]s
      max_model_len: 1024
pricing:
  %[1]s:
    input_tokens: 0.000001
    output_tokens: 1
tiers:
  free:
    rate_limit: unlimited
    included_credits: 0
`, model)))
	if err != nil {
		t.Fatal(err)
	}
	in := &inference{cfg: cfg, model: model, q: redisq.New(e.deps.Redis, redisq.Options{})}
	in.adm = admission.New(cfg, e.deps.Redis, e.db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := in.q.EnsureGroup(e.ctx, rkey.StreamKey(model, 0), rkey.GroupWorkers); err != nil {
		t.Fatal(err)
	}
	return in
}

// submit admits and enqueues a job of user with max_tokens 4.
func (in *inference) submit(t *testing.T, user string) (string, error) {
	t.Helper()
	m, _ := in.cfg.Model(in.model)
	tk, err := in.adm.Admit(context.Background(), admission.Request{JobID: rkey.NewJobID(in.model), UserID: user, Tier: sluice.TierFree,
		Model: m, PromptBytes: 10, Messages: 1, MaxTokens: 4, Timeout: time.Minute})
	if err != nil {
		return "", err
	}
	j := &sluice.Job{ID: tk.JobID, UserID: user, Model: in.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Reserved: tk.Reserved, Hold: tk.Hold}
	if err := in.q.Enqueue(context.Background(), j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return tk.JobID, nil
}

// start claims and starts the oldest queued job: it is running.
func (in *inference) start(t *testing.T) redisq.Entry {
	t.Helper()
	ctx := context.Background()
	es, _, err := in.q.Claim(ctx, rkey.GroupWorkers, "w", in.model, 1, 1, false)
	if err != nil || len(es) != 1 {
		t.Fatalf("claim: %v %v", es, err)
	}
	if out, _, err := in.q.Start(ctx, es[0], rkey.GroupWorkers, "w", in.model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	return es[0]
}

// settleAll runs a settler until user holds nothing.
func (in *inference) settleAll(t *testing.T, user string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.adm.Settler(redistest.Name("settler")).Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(15 * time.Second); ; {
		live, err := admission.LiveCounters(ctx, in.q.Client(), user)
		if err == nil && live.Holds == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("holds left unsettled: %+v %v", live, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Finding 7: a refund measured against the ledger alone took credit that
// jobs in flight held, and they then spent it: the balance went below zero
// with nothing saying so. Now the refund stops the jobs holding that
// credit, and whatever a job used before it stopped, past the balance, is
// an audited debt.
func TestRefundWithJobsInFlightLeavesNoUnseenNegative(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}")
	in := newInference(t, e)
	if st, _ := e.deliver(e.creditPurchase("cs_r", "pi_r", 10_000_000)); st != http.StatusOK {
		t.Fatal(st)
	}
	running, err := in.submit(t, e.user) // holds 4,000,026
	if err != nil {
		t.Fatal(err)
	}
	entry := in.start(t)
	queued, err := in.submit(t, e.user) // holds 4,000,026
	if err != nil {
		t.Fatal(err)
	}
	// The whole purchase is refunded: the ledger says $10 is unused.
	refund := e.event(redistest.Name("evt_"), "charge.refunded", e.next(), map[string]any{"id": "ch_r", "object": "charge",
		"customer": e.cust, "payment_intent": "pi_r", "amount": 1000, "amount_refunded": 1000})
	if st, body := e.deliver(refund); st != http.StatusOK {
		t.Fatalf("refund: %d %v", st, body)
	}
	// The queued job is cancelled before it runs; the running one is told to stop.
	js, err := in.q.Get(e.ctx, queued, "")
	if err != nil || js.Status != sluice.JobCancelled {
		t.Fatalf("queued job after the refund: %+v %v, want cancelled", js, err)
	}
	if c, _ := e.deps.Redis.HGet(e.ctx, rkey.JobKey(running), "cancel").Result(); c != "1" {
		t.Fatalf("running job not told to stop (cancel=%q)", c)
	}
	// The running job had already produced its output: 20 prompt and 4
	// completion tokens, 4,000,020 micro-dollars, all of it past the balance.
	o := redisq.Outcome{Status: sluice.JobSucceeded, HTTP: 200, Result: []byte(`{}`),
		Usage: &sluice.UsageEvent{JobID: running, UserID: e.user, Model: in.model, Usage: sluice.Usage{PromptTokens: 20, CompletionTokens: 4}}}
	if ok, err := in.q.Complete(e.ctx, rkey.GroupWorkers, entry, o); err != nil || !ok {
		t.Fatalf("complete: %v %v", ok, err)
	}
	in.settleAll(t, e.user)
	var credit, debt int64
	if err := e.db.Pool.QueryRow(e.ctx, `SELECT COALESCE(sum(credit_micros), 0)::bigint, COALESCE(sum(debt_micros), 0)::bigint
		FROM credit_ledger WHERE user_id = $1`, e.user).Scan(&credit, &debt); err != nil {
		t.Fatal(err)
	}
	if credit != -4_000_020 || debt != 4_000_020 {
		t.Fatalf("ledger: credit %d, debt %d; want -4000020, all of it recorded debt", credit, debt)
	}
	if live, _ := admission.LiveCounters(e.ctx, e.deps.Redis, e.user); live.Credit != credit {
		t.Fatalf("live credit %d, ledger %d", live.Credit, credit)
	}
}

// Finding 7: a dispute suspends prepaid credit (and postpaid use) until it
// closes; won, the credit its clawback took comes back.
func TestDisputeSuspendsUntilClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}")
	in := newInference(t, e)
	e.deliver(e.creditPurchase("cs_d1", "pi_d1", 10_000_000))
	e.deliver(e.creditPurchase("cs_d2", "pi_d2", 10_000_000))
	dispute := func(typ, status string) []byte {
		return e.event(redistest.Name("evt_"), typ, e.next(), map[string]any{"id": "dp_d", "object": "dispute",
			"charge": "ch_d1", "payment_intent": "pi_d1", "amount": 1000, "status": status})
	}
	if st, body := e.deliver(dispute("charge.dispute.created", "needs_response")); st != http.StatusOK {
		t.Fatalf("dispute: %d %v", st, body)
	}
	if c := e.credit(); c != 10_000_000 {
		t.Fatalf("after the dispute: credit %d, want the other purchase's 10000000", c)
	}
	// $10 of undisputed credit is left, but nothing is admitted on it.
	if _, err := in.submit(t, e.user); sluice.KindOf(err) != sluice.KindQuota {
		t.Fatalf("admission during a dispute = %v, want insufficient_quota", err)
	}
	// Counters rebuilt from the ledger stay suspended.
	e.deps.Redis.Del(e.ctx, "sluice:{u:"+e.user+"}:funds")
	if _, err := in.submit(t, e.user); sluice.KindOf(err) != sluice.KindQuota {
		t.Fatalf("admission during a dispute after a reload = %v, want insufficient_quota", err)
	}
	bal, err := e.db.LedgerBalance(e.ctx, e.user, sluice.CalendarPeriod(time.Now()))
	if err != nil || bal.OpenDisputes != 1 {
		t.Fatalf("open disputes %d (%v), want 1", bal.OpenDisputes, err)
	}
	// Won: the $10 comes back (a reversal) and admission resumes.
	if st, body := e.deliver(dispute("charge.dispute.closed", "won")); st != http.StatusOK {
		t.Fatalf("close: %d %v", st, body)
	}
	if c := e.credit(); c != 20_000_000 {
		t.Fatalf("after the dispute was won: credit %d, want 20000000", c)
	}
	if _, err := in.submit(t, e.user); err != nil {
		t.Fatalf("admission after the dispute closed = %v", err)
	}
}
