package admission_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

type bundle struct {
	cfg   *config.Config
	db    *postgres.DB
	rdb   redis.UniversalClient
	model string
	// two admitters with their own Redis connections: two submit instances
	a, b *admission.Admitter
}

func setup(t *testing.T, tiers string) *bundle {
	t.Helper()
	return setupPriced(t, tiers, "")
}

// setupPriced is setup with more pricing keys for the model (YAML lines
// indented four spaces).
func setupPriced(t *testing.T, tiers, pricing string) *bundle {
	t.Helper()
	return setupLease(t, tiers, pricing, "30s")
}

// setupLease is setupPriced with admission.lease_ttl set: 30s elsewhere,
// so a burst that takes over a second on a loaded machine (make test runs
// the Redis Cluster copy beside it) still holds every lease it took; 1s
// where a lease is meant to lapse.
func setupLease(t *testing.T, tiers, pricing, leaseTTL string) *bundle {
	t.Helper()
	model := testenv.Name("adm")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - name: %[1]s
      max_model_len: 1024
pricing:
  %[1]s:
    input_tokens: 0.000001
    output_tokens: 0.000002
%[3]sadmission:
  lease_ttl: %[4]s
tiers:
%[2]s`, model, tiers, pricing, leaseTTL)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := pgtest.New(t)
	b := &bundle{cfg: cfg, db: db, rdb: testenv.Redis(t), model: model}
	b.a = admission.New(cfg, testenv.Redis(t), db, log)
	b.b = admission.New(cfg, testenv.Redis(t), db, log)
	return b
}

func (b *bundle) user(t *testing.T, tier string) string {
	t.Helper()
	u, err := b.db.UpsertUser(context.Background(), testenv.Name("u")+"@example.com", tier, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// req is a request whose hold is prompt bound 10+8*2 = 26 tokens and 10
// completion tokens: 26*1 + 10*2 = 46 micro-dollars at the test prices.
func (b *bundle) req(user, tier string) admission.Request {
	m, _ := b.cfg.Model(b.model)
	return admission.Request{JobID: rkey.NewJobID(b.model), UserID: user, Tier: tier, Model: m,
		PromptBytes: 10, Messages: 1, MaxTokens: 10, Timeout: time.Minute}
}

type result struct {
	tk  *admission.Ticket
	err error
	hdr http.Header
}

// burst admits n requests at once, alternating between the two admitters.
func (b *bundle) burst(user, tier string, n int) []result {
	return b.burstAs(&sluice.Principal{UserID: user, Tier: tier}, n)
}

// burstAs sends n requests at once as principal p (its tier and limit
// overrides), alternating between the two instances.
func (b *bundle) burstAs(p *sluice.Principal, n int) []result {
	out := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := b.a
			if i%2 == 1 {
				a = b.b
			}
			r := b.req(p.UserID, p.Tier)
			r.Limits = p.Limits
			tk, err := a.Admit(context.Background(), r)
			h := http.Header{}
			tk.WriteHeaders(h, err != nil)
			out[i] = result{tk, err, h}
		}()
	}
	wg.Wait()
	return out
}

// Two instances, N requests per minute, 10·N at once: exactly N admitted,
// the rest refused with a Retry-After within the minute.
func TestRequestsPerMinuteExactAcrossInstances(t *testing.T) {
	t.Parallel()
	const n = 7
	b := setup(t, fmt.Sprintf("  free:\n    rate_limit: %d\n    included_credits: unlimited\n", n))
	user := b.user(t, "free")
	admitted := 0
	for _, r := range b.burst(user, "free", 10*n) {
		if r.err == nil {
			admitted++
			continue
		}
		e := sluice.AsError(r.err)
		if e.Kind != sluice.KindRateLimited || e.Code != sluice.CodeRateLimitExceeded {
			t.Fatalf("refusal = %v", r.err)
		}
		ra, err := strconv.Atoi(r.hdr.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 60 {
			t.Fatalf("Retry-After = %q", r.hdr.Get("Retry-After"))
		}
		if r.hdr.Get("x-ratelimit-limit-requests") != strconv.Itoa(n) || r.hdr.Get("x-ratelimit-remaining-requests") != "0" {
			t.Fatalf("headers = %v", r.hdr)
		}
	}
	if admitted != n {
		t.Fatalf("admitted %d of %d, want exactly %d", admitted, 10*n, n)
	}
}

// A balance worth exactly K requests, 20·K at once: K admitted, the balance
// never below zero, and what was charged equals the settled usage.
func TestCreditNeverNegativeAndSettledExactly(t *testing.T) {
	t.Parallel()
	const k = 6
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 0\n")
	ctx := context.Background()
	user := b.user(t, "free")
	period := time.Now().UTC().Format("2006-01")
	id, err := b.db.LedgerGrant(ctx, user, period, k*46, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, b.rdb, user, id, k*46); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, r := range b.burst(user, "free", 20*k) {
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
	if err != nil || live.Credit-live.HeldCredit != 0 {
		t.Fatalf("available credit after the burst = %d - %d (%v), want 0", live.Credit, live.HeldCredit, err)
	}
	// The engine reports 20 prompt and 7 completion tokens: 20 + 14 = 34 micro-dollars each.
	for _, j := range jobs {
		b.rdb.HSet(ctx, rkey.JobKey(j), "usage", `{"prompt_tokens":20,"completion_tokens":7}`)
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
	want := int64(k*46 - k*34)
	if bal.CreditMicros != want || live.Credit != want || live.HeldCredit != 0 || live.Holds != 0 {
		t.Fatalf("ledger credit %d, live %+v; want %d left", bal.CreditMicros, live, want)
	}
	// The counters rebuilt from the ledger alone say the same.
	b.rdb.Del(ctx, "sluice:{u:"+user+"}:funds")
	if _, err := b.a.Admit(ctx, b.req(user, "free")); err != nil { // 72 left: one more fits
		t.Fatalf("admit after rebuild = %v", err)
	}
	if _, err := b.a.Admit(ctx, b.req(user, "free")); sluice.KindOf(err) != sluice.KindQuota {
		t.Fatalf("second admit after rebuild = %v, want insufficient_quota (26 left < 46)", err)
	}
	live, _ = admission.LiveCounters(ctx, b.rdb, user)
	if live.Credit != want {
		t.Fatalf("rebuilt credit %d, want %d", live.Credit, want)
	}
}

// Included tokens first, then postpaid overage up to the cap.
func TestIncludedThenOverageCap(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: unlimited\n    included_credits: 72\n    overage: postpaid\n    overage_cap: 0.000100\n")
	ctx := context.Background()
	user := b.user(t, "free")
	// Each request holds 36 tokens: two fit the 72 included, then each costs 46
	// of the 100 micro-dollar cap: two more, then refused.
	var ok int
	for range 6 {
		if _, err := b.a.Admit(ctx, b.req(user, "free")); err == nil {
			ok++
		} else if sluice.KindOf(err) != sluice.KindQuota {
			t.Fatal(err)
		}
	}
	live, _ := admission.LiveCounters(ctx, b.rdb, user)
	if ok != 4 || live.HeldIncluded != 72 || live.HeldOverage != 92 {
		t.Fatalf("admitted %d, live %+v", ok, live)
	}
}

// A lease whose holder stops refreshing it (a killed submit instance) comes
// back within the lease time; a kept-alive one does not.
func TestLeasesLapse(t *testing.T) {
	t.Parallel()
	b := setupLease(t, "  free:\n    rate_limit: unlimited\n    included_credits: unlimited\n    concurrency: 2\n", "", "1s")
	ctx := context.Background()
	user := b.user(t, "free")
	alive, err := b.a.Admit(ctx, b.req(user, "free"))
	if err != nil {
		t.Fatal(err)
	}
	lease := b.a.KeepAlive(ctx, alive)
	defer lease.Release(ctx)
	if _, err := b.b.Admit(ctx, b.req(user, "free")); err != nil { // its holder "dies": never refreshed
		t.Fatal(err)
	}
	_, err = b.a.Admit(ctx, b.req(user, "free"))
	if sluice.KindOf(err) != sluice.KindRateLimited {
		t.Fatalf("third concurrent = %v, want rate_limit_exceeded", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = b.a.Admit(ctx, b.req(user, "free"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead holder's slot never came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The kept-alive lease is still held: a fourth is refused.
	if _, err := b.a.Admit(ctx, b.req(user, "free")); sluice.KindOf(err) != sluice.KindRateLimited {
		t.Fatalf("with the live lease and the new one held, admit = %v", err)
	}
}

func TestSplitNeverExceedsHold(t *testing.T) {
	t.Parallel()
	h := admission.Hold{PromptBound: 26, MaxOutput: 10, InputPrice: 1, OutputPrice: 2, Included: 30, Credit: 10, Overage: 2}
	for p := int64(0); p <= 26; p++ {
		for c := int64(0); c <= 10; c++ {
			ch := h.Split(p, c, 0, admission.Room{})
			if ch.Included > h.Included || ch.Credit > h.Credit || ch.Overage > h.Overage || ch.Debt != 0 || ch.Excess != 0 {
				t.Fatalf("Split(%d,%d) = %+v", p, c, ch)
			}
		}
	}
}

// Redis unreachable: 503 by default (fail closed); admitted, unlimited and
// uncharged with admission.fail_open.
func TestRedisDownFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: 10\n")
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer dead.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err := admission.New(b.cfg, dead, b.db, log).Admit(context.Background(), b.req("u", "free"))
	if e := sluice.AsError(err); e.Kind != sluice.KindUnavailable || e.Code != sluice.CodeServiceUnavailable {
		t.Fatalf("fail closed: %v", err)
	}
	open := *b.cfg
	open.Admission.FailOpen = true
	tk, err := admission.New(&open, dead, b.db, log).Admit(context.Background(), b.req("u", "free"))
	if err != nil || tk.Reserved {
		t.Fatalf("fail open: %v reserved=%v", err, tk.Reserved)
	}
}
