package admission_test

import (
	"context"
	"testing"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestServiceTierFactors: a job's money is held and charged at the
// model's prices × its service tier's factor, rounded up once per job
// (ceil(money × ppm / 1e6)): flex at 1 − flex_discount, priority at
// priority_multiplier, a batch line at 1 − batch_discount. The hold is
// what lets a user with half the funds run a flex job; a job whose hold is
// gone, or whose usage went past it (grown), is charged at the same
// factor; the ledger row says the tier.
func TestServiceTierFactors(t *testing.T) {
	t.Parallel()
	b := setupPriced(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n",
		"    batch_discount: 0.3\n    priority_multiplier: 1.5\n")
	ctx := context.Background()
	tierOf := func(job string) string {
		var s string
		if err := b.db.Pool.QueryRow(ctx, `SELECT coalesce(service_tier, '') FROM credit_ledger WHERE job_id = $1`, job).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The hold of b.req is 46 µ$ at the base price; usage 20+7 costs 34.
	for _, c := range []struct {
		tier           string
		held, charged  int64
		ledgerTierWant string
	}{
		{sluice.TierFlex, 23, 17, "flex"},         // × 0.5 (the default flex_discount)
		{sluice.TierPriority, 69, 51, "priority"}, // × 1.5
		{sluice.TierBatch, 33, 24, "batch"},       // × 0.7: ceil(32.2), ceil(23.8)
		{sluice.TierDefault, 46, 34, ""},          // × 1
		{"", 46, 34, ""},                          // no tier: the base price
	} {
		user := b.user(t, "free")
		b.grant(t, user, c.held) // exactly the hold: the base price would not admit a flex job
		r := b.req(user, "free")
		r.ServiceTier = c.tier
		tk, err := b.a.Admit(ctx, r)
		if err != nil {
			t.Fatalf("%s: admit with %d µ$: %v", c.tier, c.held, err)
		}
		live, _ := admission.LiveCounters(ctx, b.rdb, user)
		if live.HeldCredit != c.held {
			t.Fatalf("%s: held %d, want %d (hold %s)", c.tier, live.HeldCredit, c.held, tk.Hold)
		}
		b.run(t, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7})
		b.settle(t, user, tk.JobID)
		if row := b.row(t, tk.JobID); row.credit != -c.charged || row.debt != 0 || row.unheld {
			t.Fatalf("%s: row %+v, want %d charged", c.tier, row, c.charged)
		}
		if got := tierOf(tk.JobID); got != c.ledgerTierWant {
			t.Fatalf("%s: ledger service_tier %q", c.tier, got)
		}
		t.Logf("%-8s held %d µ$, charged %d µ$ for a 34 µ$ job", c.tier, c.held, c.charged)
	}

	// A flex job whose hold is gone is charged from its terms at × 0.5.
	user := b.user(t, "free")
	b.grant(t, user, 100)
	r := b.req(user, "free")
	r.ServiceTier = sluice.TierFlex
	tk, err := b.a.Admit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	b.rdb.HDel(ctx, "sluice:{u:"+user+"}:holds", tk.JobID)
	b.rdb.HIncrBy(ctx, "sluice:{u:"+user+"}:funds", "cr_held", -23)
	b.run(t, tk, sluice.Usage{PromptTokens: 20, CompletionTokens: 7})
	b.settle(t, user, tk.JobID)
	if row := b.row(t, tk.JobID); row.credit != -17 || !row.unheld || tierOf(tk.JobID) != "flex" {
		t.Fatalf("flex without its hold: row %+v, want 17 charged, unheld", row)
	}

	// A flex job past its hold grows it (grow.lua keeps the price term)
	// and pays × 0.5 of everything: 40 prompt + 20 completion = 80 → 40.
	r = b.req(user, "free")
	r.ServiceTier = sluice.TierFlex
	tk, err = b.a.Admit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	b.run(t, tk, sluice.Usage{PromptTokens: 40, CompletionTokens: 20})
	b.settle(t, user, tk.JobID)
	if row := b.row(t, tk.JobID); row.credit != -40 || row.debt != 0 || row.excess == 0 {
		t.Fatalf("flex past its hold: row %+v, want 40 charged", row)
	}
	live, _ := admission.LiveCounters(ctx, b.rdb, user)
	if live.Credit != 100-17-40 || live.HeldCredit != 0 {
		t.Fatalf("live %+v, want credit %d and nothing held", live, 100-17-40)
	}
}

// TestApplyFactor: ceil(money × ppm / 1e6), exact where money × ppm
// overflows int64.
func TestApplyFactor(t *testing.T) {
	for _, c := range []struct{ money, ppm, want int64 }{
		{59, 500_000, 30}, {34, 700_000, 24}, {0, 2_000_000, 0}, {1, 1, 1}, {10, 0, 0},
		{1_000_000, 500_000, 500_000}, {9_000_000_000_000_001, 2_000_000, 18_000_000_000_000_002},
		{9_000_000_000_000_001, 500_000, 4_500_000_000_000_001},
	} {
		if got := admission.ApplyFactor(c.money, c.ppm); got != c.want {
			t.Errorf("ApplyFactor(%d, %d) = %d, want %d", c.money, c.ppm, got, c.want)
		}
	}
}
