package admission_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func TestSplitRequestAndGPUPrices(t *testing.T) {
	t.Parallel()
	// Tokens: 1 and 2 micro-dollars; 500 per request; 3 per GPU-second.
	base := admission.Hold{PromptBound: 26, MaxOutput: 10, InputPrice: 1, OutputPrice: 2, RequestPrice: 500, GPUPrice: 3}
	for _, c := range []struct {
		name              string
		included, cr, ov  int64
		prompt, compl, ms int64
		want              admission.Charge
	}{
		// 20 + 14 tokens, 500 per request, ceil(1234 × 3 / 1000) = 4.
		{"credit pays all", 0, 10_000, 0, 20, 7, 1234, admission.Charge{Credit: 538}},
		// Included tokens pay the tokens; the request and GPU prices stay money.
		{"included covers tokens only", 100, 10_000, 0, 20, 7, 1000, admission.Charge{Included: 27, Credit: 503}},
		// Credit first, overage the rest.
		{"credit then overage", 0, 300, 1000, 20, 7, 1, admission.Charge{Credit: 300, Overage: 235}},
		// One started millisecond costs a whole micro-dollar (rounded up).
		{"one millisecond", 0, 10_000, 0, 1, 0, 1, admission.Charge{Credit: 1 + 500 + 1}},
		// Nothing used: no per-request charge.
		{"nothing used", 0, 10_000, 0, 0, 0, 0, admission.Charge{}},
		// Engine time without tokens (a failed job) still pays its request and time.
		{"engine time only", 0, 10_000, 0, 0, 0, 2000, admission.Charge{Credit: 506}},
		// Past the hold with nothing free beyond it: charged all the same, as debt.
		{"past the hold is debt", 0, 400, 100, 20, 7, 1234, admission.Charge{Credit: 400, Overage: 100, Debt: 38}},
	} {
		h := base
		h.Included, h.Credit, h.Overage = c.included, c.cr, c.ov
		if got := h.Split(c.prompt, c.compl, c.ms, admission.Room{}); got != c.want {
			t.Errorf("%s: Split(%d, %d, %d) = %+v, want %+v", c.name, c.prompt, c.compl, c.ms, got, c.want)
		}
	}
	if g := admission.GPUCharge(1000, 3); g != 3 {
		t.Errorf("GPUCharge(1s, 3/s) = %d", g)
	}
}

// A per-request price (and a GPU-second price held for the job's whole time
// limit) spends credit: a balance worth exactly K worst cases admits K of a
// burst, and settlement charges tokens + per-request + engine time.
func TestPerRequestPriceExhaustsCredit(t *testing.T) {
	t.Parallel()
	const k = 5
	// Worst case: 46 (tokens) + 10000 (request) + 60 s × 3 = 180 (GPU) = 10226.
	const worst = 46 + 10_000 + 180
	b := setupPriced(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n",
		"    per_request: 0.01\n    per_gpu_second: 0.000003\n")
	ctx := context.Background()
	user := b.user(t, "free")
	period := time.Now().UTC().Format("2006-01")
	id, err := b.db.LedgerGrant(ctx, user, period, k*worst, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, b.rdb, user, id, k*worst); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, r := range b.burst(user, "free", 10*k) {
		if r.err == nil {
			jobs = append(jobs, r.tk.JobID)
		} else if e := sluice.AsError(r.err); e.Kind != sluice.KindQuota || e.Code != sluice.CodeInsufficientQuota {
			t.Fatalf("refusal = %v", r.err)
		}
	}
	if len(jobs) != k {
		t.Fatalf("admitted %d, want %d", len(jobs), k)
	}
	live, err := admission.LiveCounters(ctx, b.rdb, user)
	if err != nil || live.Credit-live.HeldCredit != 0 || live.HeldCredit != k*worst {
		t.Fatalf("after the burst: %+v (%v), want all %d held", live, err, k*worst)
	}
	// 20 + 7 tokens (34), the request (10000), 1234 ms at 3 per second
	// (ceil 3.702 = 4): 10038 each.
	for _, j := range jobs {
		b.rdb.HSet(ctx, rkey.JobKey(j), "usage", `{"prompt_tokens":20,"completion_tokens":7}`, "engine_ms", strconv.Itoa(1234))
		b.rdb.Expire(ctx, rkey.JobKey(j), time.Minute)
		for range 2 { // settling twice charges once
			if err := b.a.Settle(ctx, j, user); err != nil {
				t.Fatal(err)
			}
		}
	}
	bal, err := b.db.LedgerBalance(ctx, user, period)
	if err != nil {
		t.Fatal(err)
	}
	live, _ = admission.LiveCounters(ctx, b.rdb, user)
	want := int64(k*worst - k*10_038)
	if bal.CreditMicros != want || live.Credit != want || live.HeldCredit != 0 || live.Holds != 0 {
		t.Fatalf("ledger credit %d, live %+v; want %d left", bal.CreditMicros, live, want)
	}
}

// A model priced by tokens alone gets the 9-field hold of before (a settler
// not yet upgraded reads it right); one with request or GPU-second prices
// gets them appended.
func TestHoldFieldsOnlyWhenPriced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		pricing string
		want    string // the hold: %[1]s the period, %[2]s the model
	}{
		{"", "26|10|1|2|36|0|0|%[1]s|%[2]s"},
		// Included tokens pay the tokens; the request and 60 s × 3 µ$ go to overage.
		{"    per_request: 0.01\n    per_gpu_second: 0.000003\n", "26|10|1|2|36|0|10180|%[1]s|%[2]s|10000|3"},
	} {
		b := setupPriced(t, "  free:\n    rate_limit: unlimited\n    included_credits: unlimited\n    overage: postpaid\n    overage_cap: 1\n", c.pricing)
		user := b.user(t, "free")
		r := b.req(user, "free")
		if _, err := b.a.Admit(ctx, r); err != nil {
			t.Fatal(err)
		}
		h, err := b.rdb.HGet(ctx, "sluice:{u:"+user+"}:holds", r.JobID).Result()
		if err != nil {
			t.Fatal(err)
		}
		period := strings.Split(h, "|")[7]
		if want := fmt.Sprintf(c.want, period, b.model); h != want {
			t.Fatalf("hold %q, want %q", h, want)
		}
	}
}

// Usage past the hold is charged from what the balance has free: included
// tokens, then overage under the cap, then credit, and the rest is debt. A
// hold whose credit a clawback took back is covered only as far as the
// balance still backs it.
func TestSplitPastTheHold(t *testing.T) {
	t.Parallel()
	// Bounds 26 + 10 tokens; 1 and 2 micro-dollars a token; 46 held as credit.
	h := admission.Hold{PromptBound: 26, MaxOutput: 10, InputPrice: 1, OutputPrice: 2, Credit: 46}
	for _, c := range []struct {
		name          string
		prompt, compl int64
		room          admission.Room
		want          admission.Charge
	}{
		{"within the hold: the free balance untouched", 20, 7, admission.Room{Included: 1000, Overage: 1000, CreditFree: 1000},
			admission.Charge{Credit: 34}},
		// 100 + 40 = 140 past the 46 held: 30 free included tokens pay 30 prompt tokens.
		{"included room first", 100, 20, admission.Room{Included: 30, Overage: 0, CreditFree: 1000},
			admission.Charge{Included: 30, Credit: 110, Excess: 74 + 10}},
		{"then overage", 100, 20, admission.Room{Included: 0, Overage: 50, CreditFree: 1000},
			admission.Charge{Credit: 90, Overage: 50, Excess: 84}},
		{"then credit, then debt", 100, 20, admission.Room{Included: 0, Overage: 50, CreditFree: 30},
			admission.Charge{Credit: 76, Overage: 50, Debt: 14, Excess: 84}},
		// A clawback left the balance 20 short of the holds: 26 of the 46 backed.
		{"clawed-back hold", 20, 7, admission.Room{CreditFree: -20}, admission.Charge{Credit: 26, Debt: 8}},
		{"unlimited included", 100, 20, admission.Room{Included: -1}, admission.Charge{Included: 120, Excess: 84}},
	} {
		if got := h.Split(c.prompt, c.compl, 0, c.room); got != c.want {
			t.Errorf("%s: Split(%d, %d, %+v) = %+v, want %+v", c.name, c.prompt, c.compl, c.room, got, c.want)
		}
	}
}
