package admission_test

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestSplitCachedTokens: a prompt's cached tokens (a part of it) pay the
// cached price, included tokens take the uncached prompt tokens first, the
// tier factor rounds the whole job's money once, and CachedSaved is the
// charge at the input price less the charge made.
func TestSplitCachedTokens(t *testing.T) {
	t.Parallel()
	// Input 100, cached 25, output 200 micro-dollars a token.
	base := admission.Hold{PromptBound: 1000, MaxOutput: 100, InputPrice: 100, OutputPrice: 200, CachedPrice: 25,
		Credit: 1_000_000, Tier: sluice.TierDefault, FactorPPM: 1_000_000}
	for _, c := range []struct {
		name                  string
		tier                  string
		ppm, included         int64
		prompt, cached, compl int64
		cachedPrice           int64
		want                  admission.Charge
	}{
		// 205 prompt tokens of which 192 cached, 2 completion:
		// 13×100 + 192×25 + 2×200 = 1300 + 4800 + 400 = 6500; at the input
		// price 20500 + 400 = 20900: saved 14400.
		{"cached price", "", 1_000_000, 0, 205, 192, 2, 25, admission.Charge{Credit: 6500, Cached: 192, CachedSaved: 14400}},
		// No cached tokens: exactly the input price.
		{"none cached", "", 1_000_000, 0, 205, 0, 2, 25, admission.Charge{Credit: 20900}},
		// The engine says more cached than the prompt: clamped to it.
		{"clamped to the prompt", "", 1_000_000, 0, 10, 50, 0, 25, admission.Charge{Credit: 250, Cached: 10, CachedSaved: 750}},
		// Free cached tokens.
		{"free", "", 1_000_000, 0, 205, 192, 2, 0, admission.Charge{Credit: 1700, Cached: 192, CachedSaved: 19200}},
		// A cached price above the input price (config changed since the
		// hold) is held to the input price: no saving, never past the hold.
		{"never above input", "", 1_000_000, 0, 205, 192, 2, 500, admission.Charge{Credit: 20900, Cached: 192}},
		// Included tokens (20) take the 13 uncached prompt tokens, then 7
		// cached: 185 cached × 25 + 2 × 200 = 5025; at input 18900.
		{"included uncached first", "", 1_000_000, 20, 205, 192, 2, 25,
			admission.Charge{Included: 20, Credit: 5025, Cached: 192, CachedSaved: 13875}},
		// Flex at 0.5: ceil(6500 × 0.5) = 3250; at input ceil(20900 × 0.5)
		// = 10450: saved 7200.
		{"flex factor", sluice.TierFlex, 500_000, 0, 205, 192, 2, 25, admission.Charge{Credit: 3250, Cached: 192, CachedSaved: 7200}},
		// A factor that rounds: 1/3 (333333 ppm): ceil(6500 × 0.333333) =
		// 2167 (2166.6645); ceil(20900 × 0.333333) = 6967 (6966.6597).
		{"rounded once", sluice.TierFlex, 333_333, 0, 205, 192, 2, 25, admission.Charge{Credit: 2167, Cached: 192, CachedSaved: 4800}},
	} {
		h := base
		h.Included, h.CachedPrice = c.included, c.cachedPrice
		if c.tier != "" {
			h.Tier, h.FactorPPM = c.tier, c.ppm
		}
		got := h.SplitUsage(sluice.Usage{PromptTokens: c.prompt, CachedTokens: c.cached, CompletionTokens: c.compl}, 0, admission.Room{})
		if got != c.want {
			t.Errorf("%s: SplitUsage = %+v, want %+v", c.name, got, c.want)
		}
		// Caching never makes a job dearer than Split at the input price.
		if full := h.Split(c.prompt, c.compl, 0, admission.Room{}); got.Credit+got.CachedSaved != full.Credit {
			t.Errorf("%s: charged %d + saved %d != %d at the input price", c.name, got.Credit, got.CachedSaved, full.Credit)
		}
	}
}
