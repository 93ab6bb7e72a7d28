package rollup

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// These are internal tests: in the shrinkwrapped build context this package
// is the module root, so it cannot import itself by its repository path.

func testDeps(t *testing.T) Deps {
	t.Helper()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DB: pgtest.New(t)}
}

// settle runs the rollup until its horizon has passed every row committed
// so far: a transaction running elsewhere on the server (other tests) holds
// the horizon back for a moment, never for good.
func settle(t *testing.T, d Deps) []Report {
	t.Helper()
	var target int64
	if err := pg(d).Pool.QueryRow(t.Context(), `SELECT pg_current_xact_id()::text::bigint`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	var reps []Report
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := RunScheduled(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Reconcile.OK {
			t.Fatalf("reconciliation failed: %+v", rep.Reconcile)
		}
		reps = append(reps, rep)
		if !rep.Skipped && rep.WatermarkTo > target {
			return reps
		}
		if time.Now().After(deadline) {
			t.Fatalf("the horizon did not pass xid %d in 30s: %+v", target, rep)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type totals struct{ requests, prompt, completion int64 }

// sumsOf returns raw usage's, the daily and the hourly rollups' totals.
func sumsOf(t *testing.T, db *postgres.DB) (raw, daily, hourly totals) {
	t.Helper()
	ctx := t.Context()
	q := func(sql string, out *totals) {
		if err := db.Pool.QueryRow(ctx, sql).Scan(&out.requests, &out.prompt, &out.completion); err != nil {
			t.Fatal(err)
		}
	}
	q(`SELECT count(*), COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0) FROM inference_requests`, &raw)
	q(`SELECT COALESCE(sum(requests), 0), COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0) FROM usage_daily`, &daily)
	q(`SELECT COALESCE(sum(requests), 0), COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0) FROM usage_hourly`, &hourly)
	return raw, daily, hourly
}

func insertUsage(t *testing.T, db *postgres.DB, userID, prefix string, n int, ended time.Time) {
	t.Helper()
	evs := make([]sluice.UsageEvent, n)
	for i := range evs {
		model := "llama-2-7b"
		if i%3 == 0 {
			model = "mistral-7b"
		}
		evs[i] = sluice.UsageEvent{JobID: fmt.Sprintf("%s-%d", prefix, i), UserID: userID, Model: model, Status: sluice.JobSucceeded,
			Usage:     sluice.Usage{PromptTokens: int64(10 + i), CompletionTokens: int64(i % 7)},
			CreatedAt: ended.Add(-time.Second), EndedAt: ended.Add(time.Duration(i) * time.Minute)}
	}
	if _, err := db.InsertUsage(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
}

// TestRollupTwiceAndConcurrently: running the rollup twice, and twice at
// once, gives the same totals, equal to raw usage to the token; a late
// event (ended days ago, recorded now) folds into its own day.
func TestRollupTwiceAndConcurrently(t *testing.T) {
	t.Parallel()
	d := testDeps(t)
	mistral := d.Config.Pricing["mistral-7b"]
	mistral.PerRequest = 7 // the list price adds it once per request
	d.Config.Pricing["mistral-7b"] = mistral
	ctx := t.Context()
	a, err := pg(d).UpsertUser(ctx, "a@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pg(d).UpsertUser(ctx, "b@example.com", sluice.TierPro, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	insertUsage(t, pg(d), a.ID, "a", 50, now.Add(-3*time.Hour))
	insertUsage(t, pg(d), b.ID, "b", 30, now.Add(-26*time.Hour))

	first := settle(t, d)
	// Each run that folded compared the days it touched and found raw usage
	// and the rollups equal.
	var folded int64
	for _, r := range first {
		if r.Folded.Requests == 0 {
			continue
		}
		folded += r.Folded.Requests
		if c := r.Reconcile; !c.OK || c.Days < 1 || c.Raw.Requests < r.Folded.Requests || c.Raw != c.Daily {
			t.Fatalf("reconciliation of a fold of %d requests: %+v", r.Folded.Requests, c)
		}
	}
	if folded != 80 {
		t.Fatalf("the first runs folded %d requests, want 80", folded)
	}
	raw, daily, hourly := sumsOf(t, pg(d))
	if raw.requests != 80 || daily != raw || hourly != raw {
		t.Fatalf("after one run: raw %+v daily %+v hourly %+v", raw, daily, hourly)
	}
	// Twice: nothing new, nothing changes.
	settle(t, d)
	if _, daily2, hourly2 := sumsOf(t, pg(d)); daily2 != raw || hourly2 != raw {
		t.Fatalf("after a second run: daily %+v hourly %+v, raw %+v", daily2, hourly2, raw)
	}
	// A redelivered usage event is no new row, so no new count.
	insertUsage(t, pg(d), a.ID, "a", 50, now.Add(-3*time.Hour))

	// Late events: jobs that ended four days ago, recorded only now.
	late := now.Add(-96 * time.Hour)
	insertUsage(t, pg(d), a.ID, "late", 7, late)
	// and from 40 days ago: sparse days, reconciled one index range a day.
	insertUsage(t, pg(d), b.ID, "verylate", 5, now.Add(-40*24*time.Hour))
	insertUsage(t, pg(d), b.ID, "more", 20, now)

	// Twice at once: one folds, the other finds the lock held (or runs
	// after it and finds nothing new); the totals are the same.
	var wg sync.WaitGroup
	reps := make([][]Report, 2)
	for i := range reps {
		wg.Add(1)
		go func() { defer wg.Done(); reps[i] = settle(t, d) }()
	}
	wg.Wait()
	raw, daily, hourly = sumsOf(t, pg(d))
	if raw.requests != 112 || daily != raw || hourly != raw {
		t.Fatalf("after concurrent runs: raw %+v daily %+v hourly %+v", raw, daily, hourly)
	}
	folded = 0
	for _, rs := range reps {
		for _, r := range rs {
			folded += r.Folded.Requests
		}
	}
	if folded != 32 {
		t.Fatalf("concurrent runs folded %d requests between them, want 32 (each row once)", folded)
	}
	var lateReq int64
	if err := pg(d).Pool.QueryRow(ctx, `SELECT COALESCE(sum(requests), 0) FROM usage_daily WHERE user_id = $1 AND day = $2::date`,
		a.ID, late.Format(time.DateOnly)).Scan(&lateReq); err != nil || lateReq == 0 {
		t.Fatalf("late events' day has %d requests (%v)", lateReq, err)
	}
	// Per user and model, the daily rollup equals raw usage to the token.
	var diff int
	if err := pg(d).Pool.QueryRow(ctx, `
		SELECT count(*) FROM (
		  SELECT user_id, model_name, (timestamp AT TIME ZONE 'UTC')::date AS day, count(*) AS r,
		         sum(prompt_tokens) AS p, sum(completion_tokens) AS c FROM inference_requests GROUP BY 1, 2, 3) raw
		FULL JOIN usage_daily u ON u.user_id = raw.user_id AND u.model_name = raw.model_name AND u.day = raw.day
		WHERE raw.r IS DISTINCT FROM u.requests OR raw.p IS DISTINCT FROM u.prompt_tokens OR raw.c IS DISTINCT FROM u.completion_tokens`).
		Scan(&diff); err != nil || diff != 0 {
		t.Fatalf("%d (user, model, day) keys differ between raw usage and usage_daily (%v)", diff, err)
	}
	// List price: llama-2-7b is 100/200 micro-dollars per token, mistral-7b
	// 150/300 and 7 per request.
	var cost, want int64
	if err := pg(d).Pool.QueryRow(ctx, `SELECT sum(cost_micros) FROM usage_daily`).Scan(&cost); err != nil {
		t.Fatal(err)
	}
	if err := pg(d).Pool.QueryRow(ctx, `SELECT sum(CASE model_name WHEN 'llama-2-7b' THEN prompt_tokens * 100 + completion_tokens * 200
		ELSE prompt_tokens * 150 + completion_tokens * 300 + 7 END) FROM inference_requests`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if cost != want || cost == 0 {
		t.Fatalf("cost_micros %d, want %d", cost, want)
	}
}

// TestUsagePartitions: raw usage lands in its month's partition, a
// redelivered job (same id and creation time) is still written once, and
// the run creates partitions ahead.
func TestUsagePartitions(t *testing.T) {
	t.Parallel()
	d := testDeps(t)
	ctx := t.Context()
	u, err := pg(d).UpsertUser(ctx, "p@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	insertUsage(t, pg(d), u.ID, "p", 3, now)
	insertUsage(t, pg(d), u.ID, "p", 3, now)
	var part string
	var n int
	if err := pg(d).Pool.QueryRow(ctx, `SELECT tableoid::regclass::text, count(*) OVER () FROM inference_requests LIMIT 1`).Scan(&part, &n); err != nil {
		t.Fatal(err)
	}
	if want := "inference_requests_" + now.Format("200601"); part != want || n != 3 {
		t.Fatalf("rows in %s (%d rows), want %s (3 rows)", part, n, want)
	}
	if _, err := RunScheduled(ctx, d); err != nil {
		t.Fatal(err)
	}
	ahead := "inference_requests_" + time.Date(now.Year(), now.Month()+3, 1, 0, 0, 0, 0, time.UTC).Format("200601")
	var exists bool
	if err := pg(d).Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, ahead).Scan(&exists); err != nil || !exists {
		t.Fatalf("partition %s not created ahead (%v)", ahead, err)
	}
}

// overageUser makes a user with postpaid overage in the ledger.
func overageUser(t *testing.T, d Deps, email, customer string, jobs ...int64) sluice.User {
	t.Helper()
	ctx := t.Context()
	u, err := pg(d).UpsertUser(ctx, email, sluice.TierPro, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	if customer != "" {
		if _, err := pg(d).Pool.Exec(ctx, `UPDATE users SET stripe_customer_id = $2 WHERE id = $1`, u.ID, customer); err != nil {
			t.Fatal(err)
		}
	}
	es := make([]postgres.LedgerEntry, len(jobs))
	for i, ov := range jobs {
		es[i] = postgres.LedgerEntry{UserID: u.ID, Kind: "usage", JobID: fmt.Sprintf("%s-%d", email, i), Period: sluice.CalendarPeriod(time.Now()),
			Model: "llama-2-7b", PromptTokens: 10, CompletionTokens: 5, OverageMicros: ov}
	}
	if _, err := pg(d).LedgerSettle(ctx, es); err != nil {
		t.Fatal(err)
	}
	return u
}

type outboxRow struct {
	status, identifier, lastError string
	value                         int64
}

func outbox(t *testing.T, db *postgres.DB, userID string) []outboxRow {
	t.Helper()
	rows, err := db.Pool.Query(t.Context(), `SELECT status, identifier, COALESCE(last_error, ''), value FROM meter_outbox WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.status, &r.identifier, &r.lastError, &r.value); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestMeterDuplicateIdentifier: Stripe answers a repeated identifier with
// 400 "An event already exists with identifier …", which stripe-mock cannot
// produce; a server replaying that recorded answer stands in, and the row
// counts as sent. Any other error leaves it pending with the error.
func TestMeterDuplicateIdentifier(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("testdata/meter_event_duplicate.json")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var identifiers []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/billing/meter_events" || r.ParseForm() != nil {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		identifiers = append(identifiers, r.PostForm.Get("identifier"))
		f := fail
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Stripe-Should-Retry", "false")
		if f {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"message":"No such customer: 'cus_gone'","type":"invalid_request_error","code":"resource_missing"}}`) //nolint:errcheck
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		w.Write(body) //nolint:errcheck
	}))
	t.Cleanup(srv.Close)

	d := testDeps(t)
	d.Stripe = stripe.Wrap(stripe.NewWithBase("sk_test_123", srv.URL), d.Config.Billing)
	dup := overageUser(t, d, "dup@example.com", "cus_dup", 1234)
	reps := settle(t, d)
	var dups int
	for _, r := range reps {
		dups += r.Meter.Duplicates
	}
	got := outbox(t, pg(d), dup.ID)
	if len(got) != 1 || got[0].status != "sent" || dups != 1 || len(identifiers) != 1 || identifiers[0] != got[0].identifier {
		t.Fatalf("duplicate answer: outbox %+v, duplicates %d, identifiers posted %v", got, dups, identifiers)
	}

	mu.Lock()
	fail = true
	mu.Unlock()
	other := overageUser(t, d, "other@example.com", "cus_gone", 55)
	settle(t, d)
	got = outbox(t, pg(d), other.ID)
	if len(got) != 1 || got[0].status != "pending" || got[0].lastError == "" {
		t.Fatalf("other error: outbox %+v, want pending with the error", got)
	}
}

// pg is the test's store: the tests seed and inspect it beyond the
// function's UsageStore.
func pg(d Deps) *postgres.DB { return d.DB.(*postgres.DB) }
