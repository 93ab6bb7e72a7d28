package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// A paying user's included tokens count against the subscription period the
// principal names: a new period (invoice.paid moved period_start) is a fresh
// allowance; going back to the old one (a stale cache elsewhere) gives
// nothing back, because the counters reload that period from the ledger.
// A free user keeps the calendar month.
func TestPeriodFromPrincipal(t *testing.T) {
	t.Parallel()
	// Each request holds 36 tokens; 72 included: two per period.
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 72\n  pro:\n    rate_limit: unlimited\n    included_credits: 72\n")
	ctx := context.Background()
	user := b.user(t, "pro")
	p1 := sluice.PeriodLabel(time.Date(2026, 10, 25, 14, 3, 11, 0, time.UTC))
	p2 := sluice.PeriodLabel(time.Date(2026, 11, 25, 14, 3, 11, 0, time.UTC))
	use := func(period string) (admitted int) {
		t.Helper()
		for range 3 {
			r := b.req(user, "pro")
			r.Period = period
			tk, err := b.a.Admit(ctx, r)
			if err != nil {
				if sluice.KindOf(err) != sluice.KindQuota {
					t.Fatalf("admit in %s = %v", period, err)
				}
				continue
			}
			admitted++
			// The engine used all 36 tokens: settle, so the ledger has them.
			b.rdb.HSet(ctx, rkey.JobKey(tk.JobID), "usage", `{"prompt_tokens":26,"completion_tokens":10}`)
			b.rdb.Expire(ctx, rkey.JobKey(tk.JobID), time.Minute)
			if err := b.a.Settle(ctx, tk.JobID, user); err != nil {
				t.Fatal(err)
			}
		}
		return admitted
	}
	if n := use(p1); n != 2 {
		t.Fatalf("period 1 admitted %d, want 2", n)
	}
	if n := use(p2); n != 2 {
		t.Fatalf("the next period admitted %d, want 2 (a fresh allowance)", n)
	}
	if n := use(p1); n != 0 {
		t.Fatalf("back in period 1: admitted %d, want 0 (its allowance is spent)", n)
	}
	for _, p := range []string{p1, p2} {
		bal, err := b.db.LedgerBalance(ctx, user, p)
		if err != nil || bal.IncludedTokens != 72 {
			t.Fatalf("ledger included tokens in %s = %d (%v), want 72", p, bal.IncludedTokens, err)
		}
	}

	// A free user (no period on the principal) counts in the calendar month.
	free := b.user(t, "free")
	if _, err := b.a.Admit(ctx, b.req(free, "free")); err != nil {
		t.Fatal(err)
	}
	live, err := admission.LiveCounters(ctx, b.rdb, free)
	if want := sluice.CalendarPeriod(time.Now()); err != nil || live.Period != want || live.HeldIncluded != 36 {
		t.Fatalf("free user's counters %+v (%v), want period %s with 36 held", live, err, want)
	}
}

// A clawback (a negative grant) applied before the counters load is parked
// and merged by the loader like any grant: load.lua's pattern takes negative
// amounts, and a row the ledger read already counted is not counted twice.
func TestClawbackParkedBeforeLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	ctx := context.Background()
	user := b.user(t, "free")
	id, err := b.db.LedgerGrant(ctx, user, sluice.CalendarPeriod(time.Now()), 100, "test")
	if err != nil {
		t.Fatal(err)
	}
	// Both reach Redis before anything loaded the counters: the grant is in
	// the ledger (the loader counts it once); the clawback of 40 stands for
	// one committed after the loader's ledger read.
	if err := admission.Grant(ctx, b.rdb, user, id, 100); err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, b.rdb, user, id+1_000_000, -40); err != nil {
		t.Fatal(err)
	}
	if _, err := b.a.Admit(ctx, b.req(user, "free")); err != nil { // holds 46 of the 60
		t.Fatal(err)
	}
	live, err := admission.LiveCounters(ctx, b.rdb, user)
	if err != nil || live.Credit != 60 || live.HeldCredit != 46 {
		t.Fatalf("live %+v (%v), want credit 60 (100 - 40), 46 held", live, err)
	}
}
