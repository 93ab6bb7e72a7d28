package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// getJSON GETs path with key and decodes the answer into out.
func (s *stack) getJSON(t *testing.T, key, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

// TestBillingOverageEndToEnd (issue 6, must show 4): a pro user goes past
// the included tokens into postpaid overage through the real stack (openai-go
// SDK, simulator, admission, settlement); the scheduled rollup folds it,
// the overage reaches the meter outbox and stripe-mock as a Billing Meter
// event, and balance, usage and statements show it all, to the token.
func TestBillingOverageEndToEnd(t *testing.T) {
	t.Parallel()
	s := startStackEnv(t, map[string]string{
		"STRIPE_SECRET_KEY": "sk_test_rollup",
		"STRIPE_API_BASE":   testenv.StripeMock(t),
	}, `
pricing:
  "%CHAT%":
    input_tokens: 0.0001
    output_tokens: 0.0002
tiers:
  pro:
    monthly_cost: 29
    included_credits: 40
    rate_limit: 100
    overage: postpaid
    overage_cap: 100
usage_rollup:
  schedule: 1s
`)
	ctx := context.Background()
	email := "pro-" + s.models[0] + "@example.com"
	key := strings.TrimSpace(s.cli(t, "key", "create", "--email", email, "--tier", "pro"))
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var userID string
	// The Stripe customer Checkout would have created.
	if err := conn.QueryRow(ctx, `UPDATE users SET stripe_customer_id = 'cus_e2e_rollup' WHERE email = $1 RETURNING id`, email).Scan(&userID); err != nil {
		t.Fatal(err)
	}

	c := s.client(key)
	var jobs []string
	var prompt, completion int64
	// The simulator's completions are of random length: send until the
	// requests are past the 40 included tokens (a handful usually do).
	for i := 0; prompt+completion <= 40 && i < 40; i++ {
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.models[0],
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("overage %d", i))},
			MaxTokens: openai.Int(20)}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		jobs = append(jobs, resp.Header.Get("Sluice-Job-Id"))
		prompt += out.Usage.PromptTokens
		completion += out.Usage.CompletionTokens
	}
	if prompt+completion <= 40 {
		t.Fatalf("only %d tokens: not past the 40 included", prompt+completion)
	}
	for _, j := range jobs {
		if _, _, _, n := s.ledgerRow(t, j); n != 1 {
			t.Fatalf("job %s not settled", j)
		}
	}
	var overage, included int64
	if err := conn.QueryRow(ctx, `SELECT sum(overage_micros), sum(included_tokens) FROM credit_ledger WHERE user_id = $1`, userID).
		Scan(&overage, &included); err != nil {
		t.Fatal(err)
	}
	// Admission takes a request's reservation from the included tokens only
	// while they cover all of it; the rest is postpaid at list price.
	if included <= 0 || included > 40 || included >= prompt+completion || overage <= 0 {
		t.Fatalf("ledger: included %d, overage %d micro-dollars", included, overage)
	}

	// The local stack's schedule (1s) folds and sends; wait for the outbox
	// to hold the whole overage, sent.
	var sent, pending int64
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT COALESCE(sum(value) FILTER (WHERE status = 'sent'), 0), COALESCE(sum(value) FILTER (WHERE status = 'pending'), 0)
			FROM meter_outbox WHERE user_id = $1`, userID).Scan(&sent, &pending); err != nil {
			t.Fatal(err)
		}
		if sent == overage {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("meter outbox: %d sent, %d pending; want %d sent", sent, pending, overage)
		}
	}
	var customer string
	if err := conn.QueryRow(ctx, `SELECT DISTINCT stripe_customer_id FROM meter_outbox WHERE user_id = $1`, userID).Scan(&customer); err != nil || customer != "cus_e2e_rollup" {
		t.Fatalf("outbox sent to customer %q (%v)", customer, err)
	}

	// The HTTP trigger runs the same job (nothing new to fold now).
	st, rep := s.do(t, "POST", "/function/usage-rollup/", "")
	if st != 200 || rep["object"] != "usage.rollup_run" {
		t.Fatalf("POST /function/usage-rollup/: %d %v", st, rep)
	}

	var bal struct {
		Tier   string `json:"tier"`
		Period struct {
			Label string `json:"label"`
		} `json:"period"`
		Included struct{ Limit, Used, Remaining int64 } `json:"included_tokens"`
		Credit   int64                                  `json:"credit_micros"`
		Postpaid int64                                  `json:"postpaid_micros"`
		Cap      int64                                  `json:"overage_cap_micros"`
		Debt     *int64                                 `json:"debt_micros"`
		Susp     *bool                                  `json:"funds_suspended"`
	}
	if st := s.getJSON(t, key, "/v1/billing/balance", &bal); st != 200 || bal.Tier != "pro" || bal.Period.Label != sluice.CalendarPeriod(time.Now()) ||
		bal.Included.Limit != 40 || bal.Included.Used != included || bal.Included.Remaining != 40-included || bal.Postpaid != overage || bal.Cap != 100_000_000 ||
		bal.Debt == nil || *bal.Debt != 0 || bal.Susp == nil || *bal.Susp {
		t.Fatalf("balance: %d %+v; want postpaid %d", st, bal, overage)
	}

	today := time.Now().UTC().Format(time.DateOnly)
	var usage struct {
		Data []struct {
			Date, Model      string
			Requests         int64
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
			CostMicros       int64 `json:"cost_micros"`
		} `json:"data"`
		// When the rows were folded: the console says so rather than show
		// a request not yet folded as no usage.
		FoldedAt *time.Time `json:"folded_at"`
	}
	if st := s.getJSON(t, key, "/v1/usage?start="+today+"&end="+today, &usage); st != 200 || usage.FoldedAt == nil ||
		time.Since(*usage.FoldedAt) > time.Minute || len(usage.Data) != 1 ||
		usage.Data[0].Requests != int64(len(jobs)) || usage.Data[0].PromptTokens != prompt || usage.Data[0].CompletionTokens != completion ||
		usage.Data[0].CostMicros != prompt*100+completion*200 {
		t.Fatalf("usage: %d %+v; want %d requests, %d prompt, %d completion tokens", st, usage, len(jobs), prompt, completion)
	}

	type statement struct {
		Period             string
		Tier               string
		Requests           int64
		PromptTokens       int64 `json:"prompt_tokens"`
		CompletionTokens   int64 `json:"completion_tokens"`
		IncludedTokensUsed int64 `json:"included_tokens_used"`
		OverageMicros      int64 `json:"overage_micros"`
		TotalDueMicros     int64 `json:"total_due_micros"`
	}
	var stmts struct{ Data []statement }
	if st := s.getJSON(t, key, "/v1/billing/invoices", &stmts); st != 200 || len(stmts.Data) != 1 {
		t.Fatalf("statements: %d %+v", st, stmts)
	}
	if got, want := stmts.Data[0], (statement{Period: time.Now().UTC().Format("2006-01"), Tier: "pro", Requests: int64(len(jobs)),
		PromptTokens: prompt, CompletionTokens: completion, IncludedTokensUsed: included, OverageMicros: overage,
		TotalDueMicros: overage}); got != want {
		t.Fatalf("statement %+v, want %+v", got, want)
	}

	// The runs are on /metrics: successes, and no reconciliation differences.
	mresp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !regexp.MustCompile(`(?m)^sluice_rollup_runs_total\{result="ok"\} [1-9]`).Match(mb) ||
		!regexp.MustCompile(`(?m)^sluice_reconciliation_mismatches 0$`).Match(mb) {
		t.Fatalf("rollup metrics missing:\n%s", regexp.MustCompile(`(?m)^sluice_(rollup|reconciliation)\S* .*$`).FindAll(mb, -1))
	}

	t.Logf("pro user: %d requests, %d prompt + %d completion tokens, %d included, %d micro-dollars postpaid; meter outbox sent %d to stripe-mock",
		len(jobs), prompt, completion, included, overage, sent)

	// Ownership: another user cannot read this one's; an admin can.
	other := s.newKey(t, "other-"+s.models[0]+"@example.com")
	for _, p := range []string{"/v1/billing/balance", "/v1/billing/invoices", "/v1/usage"} {
		if st := s.getJSON(t, other, p+"?user_id="+userID, nil); st != 403 {
			t.Fatalf("another user reading %s of %s: %d, want 403", p, userID, st)
		}
		if st := s.getJSON(t, s.key, p+"?user_id="+userID, nil); st != 200 {
			t.Fatalf("admin reading %s: %d", p, st)
		}
	}
	var rev struct {
		Data []struct {
			Date          string
			UsageMicros   int64 `json:"usage_micros"`
			OverageMicros int64 `json:"overage_micros"`
		}
	}
	if st := s.getJSON(t, other, "/v1/admin/revenue", nil); st != 403 {
		t.Fatalf("a user reading revenue: %d, want 403", st)
	}
	if st := s.getJSON(t, s.key, "/v1/admin/revenue?days=7", &rev); st != 200 || len(rev.Data) != 7 || rev.Data[0].Date != today ||
		rev.Data[0].OverageMicros != overage || rev.Data[0].UsageMicros < overage {
		t.Fatalf("revenue: %d %+v", st, rev)
	}
}

// TestMeterOutboxStripeMock: postpaid overage goes to stripe-mock as
// Billing Meter events (stripe-go's V1BillingMeterEvents); a user without a
// Stripe customer stays pending; later overage gets a row of its own.
func TestMeterOutboxStripeMock(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	d := rollup.Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: db,
		Stripe: stripe.Wrap(stripe.NewWithBase("sk_test_123", testenv.StripeMock(t)), cfg.Billing)}
	ctx := t.Context()
	user := func(email, customer string) string {
		u, err := db.UpsertUser(ctx, email, sluice.TierPro, sluice.RoleUser)
		if err != nil {
			t.Fatal(err)
		}
		if customer != "" {
			if _, err := db.Pool.Exec(ctx, `UPDATE users SET stripe_customer_id = $2 WHERE id = $1`, u.ID, customer); err != nil {
				t.Fatal(err)
			}
		}
		return u.ID
	}
	n := 0
	settle := func(userID string, overages ...int64) {
		es := make([]postgres.LedgerEntry, len(overages))
		for i, ov := range overages {
			n++
			es[i] = postgres.LedgerEntry{UserID: userID, Kind: "usage", JobID: fmt.Sprintf("job-%d", n),
				Period: sluice.CalendarPeriod(time.Now()), Model: "llama-2-7b", PromptTokens: 10, OverageMicros: ov}
		}
		if _, err := db.LedgerSettle(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	type row struct {
		status, identifier, lastError string
		value                         int64
	}
	outbox := func(userID string) []row {
		rows, err := db.Pool.Query(ctx, `SELECT status, identifier, COALESCE(last_error, ''), value FROM meter_outbox WHERE user_id = $1 ORDER BY id`, userID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.status, &r.identifier, &r.lastError, &r.value); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	// run until the outbox holds want rows for userID (the fold's horizon
	// waits for transactions elsewhere on the server to end).
	run := func(userID string, want int) (sent, waiting int) {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			rep, err := rollup.RunScheduled(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			sent, waiting = sent+rep.Meter.Sent, waiting+rep.Meter.Waiting
			if len(outbox(userID)) >= want {
				return sent, waiting
			}
			if time.Now().After(deadline) {
				t.Fatalf("outbox never held %d rows", want)
			}
		}
	}
	paying, noCustomer := user("paying@example.com", "cus_test_paying"), user("nocust@example.com", "")
	settle(paying, 1500, 0, 2500)
	settle(noCustomer, 700)
	run(paying, 1)
	run(noCustomer, 1)
	if got := outbox(paying); len(got) != 1 || got[0].status != "sent" || got[0].value != 4000 {
		t.Fatalf("paying user's outbox %+v, want one sent row of 4000", got)
	}
	if w := outbox(noCustomer); len(w) != 1 || w[0].status != "pending" || w[0].lastError != "the user has no Stripe customer yet" {
		t.Fatalf("user without customer: %+v, want one pending row", w)
	}
	settle(paying, 900)
	run(paying, 2)
	if got := outbox(paying); len(got) != 2 || got[1].status != "sent" || got[1].value != 900 || got[1].identifier == got[0].identifier {
		t.Fatalf("after more overage: %+v", got)
	}
}
