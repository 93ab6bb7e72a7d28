package admission_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// principal stores a key for user with the given key overrides and returns
// the principal the verifier would cache for it: the overrides come from
// PostgreSQL with the key, as in production.
func (b *bundle) principal(t *testing.T, user string, key sluice.Limits) *sluice.Principal {
	t.Helper()
	ctx := context.Background()
	k, _ := apikey.New()
	h := apikey.Hash([]byte(testenv.Pepper), k)
	if _, err := b.db.CreateKey(ctx, postgres.NewKey{UserID: user, Hash: h, Prefix: apikey.Display(k), Limits: key}); err != nil {
		t.Fatal(err)
	}
	p, _, err := b.db.LookupKeyAny(ctx, [][]byte{h})
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

// setUser applies an admin's limit change to user.
func (b *bundle) setUser(t *testing.T, user string, set []string, to sluice.Limits) {
	t.Helper()
	if _, err := b.db.UpdateUser(context.Background(), user, postgres.UserUpdate{Limits: postgres.LimitsUpdate{Set: set, To: to}}); err != nil {
		t.Fatal(err)
	}
}

func admitted(rs []result) (n int, refusals []error) {
	for _, r := range rs {
		if r.err == nil {
			n++
		} else {
			refusals = append(refusals, r.err)
		}
	}
	return n, refusals
}

// A key limited to N requests per minute, 10·N at once over two instances:
// exactly N admitted, looser or tighter than the tier.
func TestKeyOverrideAdmitsExactlyN(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: 20\n    included_credits: unlimited\n")
	for _, n := range []int64{3, 30} { // tighter, then looser than the tier's 20
		user := b.user(t, "free")
		p := b.principal(t, user, sluice.Limits{RequestsPerMinute: n})
		if p.Limits.RequestsPerMinute != n {
			t.Fatalf("principal limits = %+v", p.Limits)
		}
		rs := b.burstAs(p, 10*int(n))
		got, refusals := admitted(rs)
		if int64(got) != n {
			t.Fatalf("key override %d rpm: admitted %d of %d", n, got, 10*n)
		}
		for _, err := range refusals {
			if sluice.AsError(err).Code != sluice.CodeRateLimitExceeded {
				t.Fatalf("refusal = %v", err)
			}
		}
		if h := rs[0].hdr.Get("x-ratelimit-limit-requests"); h != strconv.FormatInt(n, 10) {
			t.Fatalf("x-ratelimit-limit-requests = %q, want %d", h, n)
		}
	}
}

// A user's override beats the tier; a key's override beats the user's.
func TestUserOverrideBeatsTier(t *testing.T) {
	t.Parallel()
	b := setup(t, "  free:\n    rate_limit: 2\n    concurrency: 1\n    included_credits: unlimited\n")
	user := b.user(t, "free")
	b.setUser(t, user, []string{postgres.LimitRPM, postgres.LimitConcurrency}, sluice.Limits{RequestsPerMinute: 5, Concurrency: 50})
	p := b.principal(t, user, sluice.Limits{})
	if got, _ := admitted(b.burstAs(p, 40)); got != 5 {
		t.Fatalf("user override 5 rpm (tier 2): admitted %d", got)
	}
	other := b.user(t, "free")
	b.setUser(t, other, []string{postgres.LimitRPM}, sluice.Limits{RequestsPerMinute: 9})
	pk := b.principal(t, other, sluice.Limits{RequestsPerMinute: 4})
	if pk.Limits.RequestsPerMinute != 4 {
		t.Fatalf("key over user: %+v", pk.Limits)
	}
	// The user's concurrency stays the tier's 1 (no override): one at a time.
	if got, _ := admitted(b.burstAs(pk, 20)); got != 1 {
		t.Fatalf("key 4 rpm, tier concurrency 1: admitted %d, want 1", got)
	}
	// Clearing the override falls back to the tier.
	b.setUser(t, user, []string{postgres.LimitRPM}, sluice.Limits{})
	if p := b.principal(t, user, sluice.Limits{}); p.Limits.RequestsPerMinute != 0 || p.Limits.Concurrency != 50 {
		t.Fatalf("after clearing: %+v", p.Limits)
	}
}

// A tier whose limits are 'custom' and a user with no override gets
// admission.custom's documented default; an override replaces it.
func TestCustomTierWithoutOverride(t *testing.T) {
	t.Parallel()
	b := setup(t, "  enterprise:\n    rate_limit: custom\n    tokens_per_minute: custom\n    concurrency: custom\n    included_credits: unlimited\n")
	e := b.a.Effective(sluice.TierEnterprise, sluice.Limits{})
	if e.RequestsPerMinute != 60 || e.TokensPerMinute != 100_000 || e.Concurrency != 8 {
		t.Fatalf("custom without override = %+v, want 60 rpm, 100000 tpm, 8 concurrent", e)
	}
	user := b.user(t, sluice.TierEnterprise)
	rs := b.burstAs(b.principal(t, user, sluice.Limits{}), 70)
	got, _ := admitted(rs)
	if got != 8 { // concurrency binds first: nothing settles during the burst
		t.Fatalf("custom default: admitted %d, want 8 (concurrency)", got)
	}
	if h := rs[0].hdr.Get("x-ratelimit-limit-requests"); h != "60" {
		t.Fatalf("x-ratelimit-limit-requests = %q, want 60", h)
	}
	other := b.user(t, sluice.TierEnterprise)
	b.setUser(t, other, []string{postgres.LimitRPM, postgres.LimitConcurrency}, sluice.Limits{RequestsPerMinute: 3, Concurrency: 100})
	if got, _ := admitted(b.burstAs(b.principal(t, other, sluice.Limits{}), 30)); got != 3 {
		t.Fatalf("custom tier with a 3 rpm override: admitted %d", got)
	}
}

// A per-user postpaid cap refuses with insufficient_quota at the cap while
// another user of the same tier keeps the tier's cap.
func TestPerUserOverageCap(t *testing.T) {
	t.Parallel()
	// Each request holds 46 micro-dollars (no included tokens, no credit).
	b := setup(t, "  pro:\n    rate_limit: unlimited\n    included_credits: 0\n    overage: postpaid\n    overage_cap: 0.000200\n")
	capped, free := b.user(t, "pro"), b.user(t, "pro")
	b.setUser(t, capped, []string{postgres.LimitCap}, sluice.Limits{OverageCap: 100})
	count := func(user string) (ok int) {
		p := b.principal(t, user, sluice.Limits{})
		for range 6 {
			r := b.req(user, "pro")
			r.Limits = p.Limits
			_, err := b.a.Admit(context.Background(), r)
			switch {
			case err == nil:
				ok++
			case sluice.AsError(err).Code != sluice.CodeInsufficientQuota:
				t.Fatalf("refusal = %v", err)
			}
		}
		return ok
	}
	if got := count(capped); got != 2 { // 2·46 = 92 ≤ 100 < 138
		t.Fatalf("user cap 100: admitted %d, want 2", got)
	}
	if got := count(free); got != 4 { // 4·46 = 184 ≤ 200 < 230
		t.Fatalf("tier cap 200: admitted %d, want 4", got)
	}
}
