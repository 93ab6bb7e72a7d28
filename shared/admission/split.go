package admission

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Hold is the worst case admission reserved for one job.
type Hold struct {
	PromptBound  int64  // tokens the prompt may take at most
	MaxOutput    int64  // completion tokens it may produce at most
	InputPrice   int64  // micro-dollars per prompt token
	OutputPrice  int64  // micro-dollars per completion token
	Included     int64  // included tokens held
	Credit       int64  // prepaid micro-dollars held
	Overage      int64  // postpaid micro-dollars held
	Period       string // YYYY-MM the hold counts against
	Model        string
	RequestPrice int64 // micro-dollars per job that ran
	GPUPrice     int64 // micro-dollars per second of engine time
	// Grown: grow.lua grew the hold to cover the job's usage past it (or
	// created it for a job whose hold was gone: Lost); it settles with no
	// room beyond it.
	Grown, Lost bool
	// Tier is the job's service tier (sluice.TierDefault when the hold has
	// no price term) and FactorPPM its price factor in parts per million
	// (config.PPM: the base price): the job's money is
	// ApplyFactor(money at the base prices, FactorPPM).
	Tier      string
	FactorPPM int64
	// CachedPrice is micro-dollars per prompt token the engine served from
	// its prefix cache. Not part of the hold string: settlement sets it from
	// pricing (CachedPrice) and the split uses at most InputPrice, so
	// a job never pays more than its hold took at the input price. Only
	// SplitUsage reads it.
	CachedPrice int64
}

// CachedPrice is the price settlement gives a model's cached prompt tokens:
// pricing.<model>.cached_input_tokens (input_tokens when unset).
func CachedPrice(p config.ModelPrice) int64 { return int64(p.CachedInputPrice()) }

// tierTerm is the hold's price term for a job at service tier st:
// '<tier>:<ppm>', or "" at the base price (the hold stays as before,
// byte for byte).
func tierTerm(st string, p config.ModelPrice) string {
	ppm := p.FactorPPM(st)
	if st == "" || st == sluice.TierDefault || ppm == config.PPM {
		return ""
	}
	return st + ":" + strconv.FormatInt(ppm, 10)
}

// parseTerm reads a price term ('<tier>:<ppm>').
func parseTerm(s string) (string, int64, bool) {
	tier, n, ok := strings.Cut(s, ":")
	ppm, err := strconv.ParseInt(n, 10, 64)
	return tier, ppm, ok && err == nil && ppm >= 0 && tier != ""
}

// ApplyFactor is money at a price factor of ppm parts per million,
// rounded up: ceil(money × ppm / 1e6), computed so no product overflows
// (admit.lua holds the same). A job's whole money is rounded once, so the
// charge never exceeds the hold taken for bounds it stayed within.
func ApplyFactor(money, ppm int64) int64 {
	if ppm == config.PPM || money <= 0 {
		return money
	}
	q, r := money/config.PPM, money%config.PPM
	return q*ppm + (r*ppm+config.PPM-1)/config.PPM
}

// ParseHold reads the hold string admit.lua writes
// (P|M|pin|pout|inc|cr|ov|period|model|preq|psec). A hold without the last
// two fields (written before per-request and GPU-second prices existed, or
// for a model priced by tokens alone) has them 0. Model names may not contain '|' (config validation), so the
// field count tells the two apart. A grown hold (grow.lua) has all eleven
// and a twelfth, 'g' (or 'u': created for a job whose hold was gone).
//
// A job at a service tier with a price factor has a twelfth field, its
// price term '<tier>:<ppm>' (so its eleven before are always written), and
// its grown hold the mark as a thirteenth.
func ParseHold(s string) (Hold, error) {
	f := strings.Split(s, "|")
	tier, ppm := sluice.TierDefault, int64(config.PPM)
	if len(f) >= 12 && strings.Contains(f[11], ":") {
		var ok bool
		if tier, ppm, ok = parseTerm(f[11]); !ok {
			return Hold{}, fmt.Errorf("admission: malformed hold %q", s)
		}
		f = append(f[:11:11], f[12:]...)
	}
	grown := len(f) == 12 && (f[11] == "g" || f[11] == "u")
	lost := grown && f[11] == "u"
	if grown {
		f = f[:11]
	}
	if len(f) != 9 && len(f) != 11 {
		return Hold{}, fmt.Errorf("admission: malformed hold %q", s)
	}
	num := []int{0, 1, 2, 3, 4, 5, 6, 9, 10}[:7+len(f)-9]
	var n [9]int64
	for i, at := range num {
		v, err := strconv.ParseInt(f[at], 10, 64)
		if err != nil {
			return Hold{}, fmt.Errorf("admission: malformed hold %q", s)
		}
		n[i] = v
	}
	return Hold{PromptBound: n[0], MaxOutput: n[1], InputPrice: n[2], OutputPrice: n[3],
		Included: n[4], Credit: n[5], Overage: n[6], Period: f[7], Model: f[8],
		RequestPrice: n[7], GPUPrice: n[8], Grown: grown, Lost: lost, Tier: tier, FactorPPM: ppm}, nil
}

// GPUCharge is what engineMS milliseconds of engine time cost at price
// micro-dollars per second: ceil(ms × price / 1000), so every started
// millisecond is paid and no fraction of a micro-dollar is ever dropped.
func GPUCharge(engineMS, price int64) int64 {
	if engineMS <= 0 || price <= 0 {
		return 0
	}
	return (engineMS*price + 999) / 1000
}

// Charge is what a settled job pays, from each source.
type Charge struct {
	Included int64 // included tokens
	Credit   int64 // prepaid micro-dollars the balance covered
	Overage  int64 // postpaid micro-dollars
	// Debt is micro-dollars no source covered: charged to the prepaid
	// balance all the same (it goes below zero by this much), recorded in
	// the ledger row's debt_micros and counted by
	// sluice_settlement_debt_micros_total. Nothing used goes unbilled.
	Debt int64
	// Excess is tokens the engine counted past the hold's bounds (prompt
	// bound and completion bound); charged like any other, counted by
	// sluice_settlement_excess_tokens_total, which an alert watches.
	Excess int64
	// Cached is the prompt tokens the engine served from its prefix cache
	// (its count, at most the prompt): a part of the prompt, never counted
	// on top of it.
	Cached int64
	// CachedSaved is micro-dollars the prefix cache saved the job: its
	// money with every prompt token at the input price less its money as
	// charged, each rounded once at its price factor as a charge is.
	CachedSaved int64
}

// Room is what a user's live counters have free beyond a job's hold when
// it settles: where usage past the hold is charged. A hold whose credit a
// clawback took back meanwhile is covered only as far as the balance still
// is: CreditFree may be negative, and then part of the hold's own credit
// is debt.
type Room struct {
	Included   int64 // included tokens neither used nor held; -1 unlimited
	Overage    int64 // postpaid micro-dollars left under the cap, neither used nor held
	CreditFree int64 // prepaid credit minus all credit held (this hold's too)
}

// Split divides a job's real usage (tokens, and the worker's engine time in
// milliseconds) between its sources. Within the hold, in the order
// admission reserved them: included tokens first (prompt tokens before
// completion tokens), then credit, then overage. Included tokens pay for
// tokens only; the per-request price (charged when the job used tokens or
// engine time) and the GPU-second price are money. Usage past the hold
// (the engine counted more than the bounds) is charged all the same:
// included tokens left, then overage left under the cap, then credit left,
// and what none covers is Debt (the balance goes below zero, audited).
func (h Hold) Split(prompt, completion, engineMS int64, r Room) Charge {
	return h.SplitUsage(sluice.Usage{PromptTokens: prompt, CompletionTokens: completion}, engineMS, r)
}

// SplitUsage is Split for a usage whose prompt the engine partly served from
// its prefix cache (u.CachedTokens, clamped to 0..prompt: the cached tokens
// are some of the prompt tokens, never more). Cached tokens cost
// CachedPrice (at most InputPrice). Included tokens count tokens, whatever
// their price: they cover the uncached prompt tokens first, then the cached
// ones, then completion tokens, so what is left to pay in money is the
// cheapest the job's tokens allow.
func (h Hold) SplitUsage(u sluice.Usage, engineMS int64, r Room) Charge {
	prompt, completion, engineMS := max(u.PromptTokens, 0), max(u.CompletionTokens, 0), max(engineMS, 0)
	cached := min(max(u.CachedTokens, 0), prompt)
	c := h.split(prompt, cached, completion, engineMS, h.Included, r)
	if c.Debt > 0 || c.Overage > h.Overage || c.Credit > h.Credit {
		// Past the hold: included tokens left free pay first. (Only then:
		// within its hold a job never takes from the free balance. The
		// settler takes what this split wants beyond the hold atomically,
		// growing the hold (grow.lua), before it charges it: settlers
		// running side by side cannot hand out the same room.)
		inc := prompt + completion
		if r.Included >= 0 {
			inc = h.Included + r.Included
		}
		c = h.split(prompt, cached, completion, engineMS, inc, r)
	}
	return c
}

// split is SplitUsage with incAvail included tokens available.
func (h Hold) split(prompt, cached, completion, engineMS, incAvail int64, r Room) Charge {
	total := prompt + completion
	var c Charge
	c.Excess = max(prompt-h.PromptBound, 0) + max(completion-h.MaxOutput, 0)
	c.Cached = cached
	c.Included = min(total, incAvail)
	inRest := max(prompt-c.Included, 0)
	// Included tokens took the uncached prompt tokens first: what is left
	// of the prompt is cached tokens first.
	cachedRest := min(cached, inRest)
	outRest := total - c.Included - inRest
	extra := GPUCharge(engineMS, h.GPUPrice)
	if total > 0 || engineMS > 0 {
		extra += h.RequestPrice
	}
	full := inRest*h.InputPrice + outRest*h.OutputPrice + extra
	money := full - cachedRest*(h.InputPrice-min(max(h.CachedPrice, 0), h.InputPrice))
	if h.Tier != "" { // a Hold built by hand, not parsed, has none: the base price
		money, full = ApplyFactor(money, h.FactorPPM), ApplyFactor(full, h.FactorPPM)
	}
	c.CachedSaved = full - money
	// The hold's credit counts only as far as the balance still backs it
	// (a refund or dispute may have taken it back while the job ran).
	backed := max(min(h.Credit, h.Credit+r.CreditFree), 0)
	c.Credit = min(money, backed)
	c.Overage = min(money-c.Credit, h.Overage)
	rest := money - c.Credit - c.Overage
	more := min(rest, max(r.Overage, 0))
	c.Overage += more
	rest -= more
	more = min(rest, max(r.CreditFree, 0))
	c.Credit += more
	c.Debt = rest - more
	return c
}
