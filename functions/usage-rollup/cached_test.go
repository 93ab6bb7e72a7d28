package rollup

import (
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestRollupCachedTokens: the rollup prices a row's cached prompt tokens at
// cached_input_tokens (clamped to the prompt: an engine's count past it
// is never billed twice), sums them and what they saved, and group_by=key
// (UsageByKey) agrees with the daily rollup to the micro-dollar.
func TestRollupCachedTokens(t *testing.T) {
	t.Parallel()
	d := testDeps(t)
	llama := d.Config.Pricing["llama-2-7b"] // input 100, output 200 micro-dollars
	cached := config.Micros(25)
	llama.CachedInputTokens = &cached
	d.Config.Pricing["llama-2-7b"] = llama
	ctx := t.Context()
	u, err := pg(d).UpsertUser(ctx, "cached@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	ev := func(id string, prompt, cached, completion int64) sluice.UsageEvent {
		return sluice.UsageEvent{JobID: id, UserID: u.ID, Model: "llama-2-7b", Status: sluice.JobSucceeded,
			Usage:     sluice.Usage{PromptTokens: prompt, CachedTokens: cached, CompletionTokens: completion},
			CreatedAt: now.Add(-time.Second), EndedAt: now}
	}
	if _, err := pg(d).InsertUsage(ctx, []sluice.UsageEvent{ev("c-1", 100, 64, 10), ev("c-2", 20, 50, 0), ev("c-3", 30, 0, 5)}); err != nil {
		t.Fatal(err)
	}
	settle(t, d)
	// c-1: 36×100 + 64×25 + 10×200 = 7200, saved 64×75 = 4800.
	// c-2: cached clamped to 20: 20×25 = 500, saved 1500.
	// c-3: 30×100 + 5×200 = 4000.
	const cost, cachedTokens, saved = 7200 + 500 + 4000, 64 + 20, 4800 + 1500
	day := now.Truncate(24 * time.Hour)
	rows, err := pg(d).UsageDaily(ctx, u.ID, day, day)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].CostMicros != cost || rows[0].CachedTokens != cachedTokens || rows[0].CachedSavedMicros != saved ||
		rows[0].PromptTokens != 150 {
		t.Fatalf("daily rollup %+v; want cost %d, cached %d, saved %d", rows, cost, cachedTokens, saved)
	}
	keys, err := pg(d).UsageByKey(ctx, u.ID, day, day, prices(d))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KeyID != "" || keys[0].Requests != 3 || keys[0].CostMicros != cost ||
		keys[0].CachedTokens != cachedTokens || keys[0].CachedSavedMicros != saved {
		t.Fatalf("by key %+v; want one keyless row: cost %d, cached %d, saved %d", keys, cost, cachedTokens, saved)
	}
	if r := hitRate(cachedTokens, 150); r != 0.56 {
		t.Fatalf("hit rate %v, want 0.56", r)
	}
}
