package billing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	stripeapi "github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/stripe"
)

const (
	secret     = "whsec_current_test"
	prevSecret = "whsec_previous_test"
	proPrice   = "price_pro_test"
)

type env struct {
	t     *testing.T
	cfg   *config.Config
	db    *postgres.DB
	deps  Deps
	srv   *httptest.Server
	user  string
	cust  string
	ctx   context.Context
	clock time.Time // event times: each event one second later unless set
}

func newEnv(t *testing.T, tierPrices string) *env {
	t.Helper()
	cfg, err := config.Parse([]byte("billing:\n  tier_prices:" + tierPrices + "\n  payment_grace: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.StripeWebhookSecret, cfg.Env.StripeWebhookSecretPrevious = secret, prevSecret
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db := pgtest.New(t)
	e := &env{t: t, cfg: cfg, db: db, ctx: context.Background(), clock: time.Now().Add(-time.Hour).Truncate(time.Second)}
	rdb := redistest.Client(t)
	e.deps = Deps{Config: cfg, DB: db, Redis: rdb, Queue: app.NewQueue(cfg, rdb), Verifier: app.NewVerifier(cfg, db, log), Log: log}
	e.srv = httptest.NewServer(New(e.deps))
	t.Cleanup(e.srv.Close)
	u, err := db.UpsertUser(e.ctx, redistest.Name("buyer")+"@example.com", sluice.TierFree, sluice.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	e.user, e.cust = u.ID, redistest.Name("cus_")
	if _, err := db.SetStripeCustomer(e.ctx, u.ID, e.cust); err != nil {
		t.Fatal(err)
	}
	return e
}

// event renders a Stripe event as Stripe sends it (API version of stripe-go v85).
func (e *env) event(id, typ string, at time.Time, obj map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "api_version": stripeapi.APIVersion,
		"created": at.Unix(), "livemode": false, "data": map[string]any{"object": obj}})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// post delivers payload signed with sec at ts; it returns the status and body.
func (e *env) post(payload []byte, sec string, ts time.Time) (int, map[string]any) {
	e.t.Helper()
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: sec, Timestamp: ts})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/webhooks/stripe", bytes.NewReader(sp.Payload))
	req.Header.Set("Stripe-Signature", sp.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body) //nolint:errcheck // checked by the callers' assertions
	return resp.StatusCode, body
}

func (e *env) deliver(payload []byte) (int, map[string]any) {
	return e.post(payload, secret, time.Now())
}

func (e *env) next() time.Time { e.clock = e.clock.Add(time.Second); return e.clock }

func (e *env) creditPurchase(session, pi string, micros int64) []byte {
	return e.event(redistest.Name("evt_"), "checkout.session.completed", e.next(), map[string]any{
		"id": session, "object": "checkout.session", "client_reference_id": e.user, "customer": e.cust,
		"payment_intent": pi, "payment_status": "paid", "mode": "payment", "amount_total": micros / 10000,
		"metadata": map[string]string{stripe.MetaUserID: e.user, stripe.MetaKind: stripe.KindCredits,
			stripe.MetaPack: "usd_10", stripe.MetaMicros: fmt.Sprint(micros)}})
}

func (e *env) subscription(typ, id, status, price string, at time.Time, start time.Time) []byte {
	return e.event(redistest.Name("evt_"), typ, at, map[string]any{
		"id": id, "object": "subscription", "customer": e.cust, "status": status, "cancel_at_period_end": false,
		"items": map[string]any{"object": "list", "data": []map[string]any{{"id": "si_1", "object": "subscription_item",
			"price": map[string]any{"id": price, "object": "price"}, "current_period_start": start.Unix(),
			"current_period_end": start.AddDate(0, 1, 0).Unix()}}}})
}

func (e *env) invoice(typ, id, sub, status string, start time.Time) []byte {
	return e.event(redistest.Name("evt_"), typ, e.next(), map[string]any{
		"id": id, "object": "invoice", "customer": e.cust, "status": status, "amount_due": 2900, "amount_paid": 2900,
		"currency": "usd", "parent": map[string]any{"type": "subscription_details",
			"subscription_details": map[string]any{"subscription": sub, "metadata": map[string]string{}}},
		"lines": map[string]any{"object": "list", "data": []map[string]any{{"id": "il_1", "object": "line_item",
			"period": map[string]any{"start": start.Unix(), "end": start.AddDate(0, 1, 0).Unix()}}}}})
}

func (e *env) credit() int64 {
	e.t.Helper()
	b, err := e.db.LedgerBalance(e.ctx, e.user, sluice.CalendarPeriod(time.Now()))
	if err != nil {
		e.t.Fatal(err)
	}
	return b.CreditMicros
}

func (e *env) state() postgres.UserBillingState {
	e.t.Helper()
	s, err := e.db.UserBilling(e.ctx, e.user)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) processed(payload []byte) bool {
	var ev struct{ ID string }
	json.Unmarshal(payload, &ev) //nolint:errcheck // our own JSON
	ok, err := e.db.StripeEventProcessed(e.ctx, ev.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

// Signature checks: a valid event is applied once; a bad signature, a
// stale timestamp and an unsigned body change nothing; the previous secret
// still verifies during a rotation.
func TestWebhookSignatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}")
	ev := e.creditPurchase("cs_valid", "pi_valid", 10_000_000)

	if st, _ := e.post(ev, "whsec_wrong", time.Now()); st != http.StatusBadRequest {
		t.Fatalf("bad signature: %d, want 400", st)
	}
	if st, _ := e.post(ev, secret, time.Now().Add(-301*time.Second)); st != http.StatusBadRequest {
		t.Fatalf("stale timestamp: %d, want 400", st)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/webhooks/stripe", bytes.NewReader(ev))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unsigned: %v %v, want 400", resp.StatusCode, err)
	}
	// A body over 1 MiB is refused as too large, signed or not.
	huge := append(bytes.Repeat([]byte(" "), maxWebhookBody), ev...)
	if st, body := e.post(huge, secret, time.Now()); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d %v, want 413", st, body)
	}
	if e.processed(ev) || e.credit() != 0 {
		t.Fatalf("a refused delivery changed something: processed %v, credit %d", e.processed(ev), e.credit())
	}

	if st, body := e.deliver(ev); st != http.StatusOK || body["status"] != "applied" {
		t.Fatalf("valid: %d %v", st, body)
	}
	if e.credit() != 10_000_000 || !e.processed(ev) {
		t.Fatalf("credit %d after a $10 purchase", e.credit())
	}
	// Rotation: an event signed with the previous secret verifies.
	rotated := e.creditPurchase("cs_rotated", "pi_rotated", 50_000_000)
	if st, body := e.post(rotated, prevSecret, time.Now()); st != http.StatusOK || body["status"] != "applied" {
		t.Fatalf("previous secret: %d %v", st, body)
	}
	if e.credit() != 60_000_000 {
		t.Fatalf("credit %d, want 60000000", e.credit())
	}
	// An unknown type is acknowledged and ignored.
	if st, body := e.deliver(e.event("evt_other", "customer.created", e.next(), map[string]any{"id": "cus_x", "object": "customer"})); st != http.StatusOK || body["status"] != "ignored" {
		t.Fatalf("unknown type: %d %v", st, body)
	}
}

// A duplicate delivery pays once, and re-applies the grant to the live
// counters (idempotently) in case the first delivery's Redis step was lost.
func TestWebhookDuplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}")
	ev := e.creditPurchase("cs_dup", "pi_dup", 10_000_000)
	for i, want := range []string{"applied", "duplicate", "duplicate"} {
		if st, body := e.deliver(ev); st != http.StatusOK || body["status"] != want {
			t.Fatalf("delivery %d: %d %v, want %s", i, st, body, want)
		}
	}
	// Another event for the same session (Stripe may send one per attempt) pays nothing either.
	if st, _ := e.deliver(e.creditPurchase("cs_dup", "pi_dup", 10_000_000)); st != http.StatusOK {
		t.Fatalf("second event of the session: %d", st)
	}
	if e.credit() != 10_000_000 {
		t.Fatalf("credit %d after duplicates, want 10000000", e.credit())
	}
	// A session that is not Sluice's (another app on the same Stripe
	// account) is acknowledged and changes nothing.
	foreign := e.event(redistest.Name("evt_"), "checkout.session.completed", e.next(), map[string]any{
		"id": "cs_foreign", "object": "checkout.session", "client_reference_id": "order-17", "customer": "cus_someone_else",
		"payment_status": "paid", "mode": "payment", "amount_total": 500})
	if st, _ := e.deliver(foreign); st != http.StatusOK || e.credit() != 10_000_000 {
		t.Fatalf("a foreign session: %d, credit %d", st, e.credit())
	}
	// The live counters load from the ledger and hold the grant once.
	adm := admission.New(e.cfg, e.deps.Redis, e.db, e.deps.Log)
	m, _ := e.cfg.Model("llama-2-7b")
	if _, err := adm.Admit(e.ctx, admission.Request{JobID: "job-" + redistest.Name("d"), UserID: e.user, Tier: sluice.TierFree, Model: m,
		PromptBytes: 10, Messages: 1, MaxTokens: 10, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	live, err := admission.LiveCounters(e.ctx, e.deps.Redis, e.user)
	if err != nil || live.Credit != 10_000_000 {
		t.Fatalf("live credit %d (%v), want 10000000", live.Credit, err)
	}
}

// Subscription events out of order: updated (newer) before created (older)
// gives the newer state; the late created changes nothing; deleted goes
// back to free. invoice.paid starts the period; a payment failure suspends
// paid features only after the grace period.
func TestWebhookSubscriptionOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "\n    pro: "+proPrice)
	t0 := e.next()
	start := time.Date(2026, 11, 25, 14, 3, 11, 0, time.UTC)
	updated := e.subscription("customer.subscription.updated", "sub_1", "active", proPrice, t0.Add(10*time.Second), start)
	created := e.subscription("customer.subscription.created", "sub_1", "incomplete", proPrice, t0, start)
	for _, ev := range [][]byte{updated, created} {
		if st, body := e.deliver(ev); st != http.StatusOK {
			t.Fatalf("%d %v", st, body)
		}
	}
	if s := e.state(); s.Tier != sluice.TierPro {
		t.Fatalf("tier after updated-then-created = %s, want pro", s.Tier)
	}
	// Paid invoice: the period starts, and the principal carries its label.
	e.clock = t0.Add(20 * time.Second)
	if st, body := e.deliver(e.invoice("invoice.paid", "in_1", "sub_1", "paid", start)); st != http.StatusOK {
		t.Fatalf("invoice.paid: %d %v", st, body)
	}
	p, err := e.db.UserPrincipal(e.ctx, e.user)
	if err != nil {
		t.Fatal(err)
	}
	p.ResolveBilling(time.Now(), e.cfg.Billing.PaymentGrace)
	if p.Tier != sluice.TierPro || p.Period != sluice.PeriodLabel(start) {
		t.Fatalf("principal tier %s period %q, want pro %s", p.Tier, p.Period, sluice.PeriodLabel(start))
	}
	// A payment fails: still pro within the grace (1h), free after it.
	if st, _ := e.deliver(e.invoice("invoice.payment_failed", "in_2", "sub_1", "open", start.AddDate(0, 1, 0))); st != http.StatusOK {
		t.Fatal(st)
	}
	p, _ = e.db.UserPrincipal(e.ctx, e.user)
	at := *p.PastDueSince
	q := p
	p.ResolveBilling(at.Add(59*time.Minute), e.cfg.Billing.PaymentGrace)
	q.ResolveBilling(at.Add(61*time.Minute), e.cfg.Billing.PaymentGrace)
	if p.Tier != sluice.TierPro || q.Tier != sluice.TierFree || q.Period != "" {
		t.Fatalf("within grace %s, after %s (period %q); want pro, then free on the calendar month", p.Tier, q.Tier, q.Period)
	}
	// The next paid invoice clears the mark and moves the period.
	next := start.AddDate(0, 1, 0)
	if st, _ := e.deliver(e.invoice("invoice.paid", "in_2", "sub_1", "paid", next)); st != http.StatusOK {
		t.Fatal(st)
	}
	if s := e.state(); s.PastDueSince != nil || !s.PeriodStart.Equal(next) {
		t.Fatalf("after payment: %+v, want period %s and no past-due", s, next)
	}
	// Deleted: back to free, the period ends; an older updated arriving late changes nothing.
	if st, _ := e.deliver(e.subscription("customer.subscription.deleted", "sub_1", "canceled", proPrice, t0.Add(time.Minute), start)); st != http.StatusOK {
		t.Fatal(st)
	}
	if st, _ := e.deliver(e.subscription("customer.subscription.updated", "sub_1", "active", proPrice, t0.Add(30*time.Second), start)); st != http.StatusOK {
		t.Fatal(st)
	}
	if s := e.state(); s.Tier != sluice.TierFree || s.PeriodStart != nil {
		t.Fatalf("after deleted and a late update: %+v, want free with no period", s)
	}
}

// A handler that fails answers 500 and records nothing; Stripe's retry,
// once the cause is fixed, applies it.
func TestWebhookFailureRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}") // no tier has a Stripe price yet
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	ev := e.subscription("customer.subscription.created", "sub_f", "active", proPrice, e.next(), start)
	if st, body := e.deliver(ev); st != http.StatusInternalServerError {
		t.Fatalf("unknown price: %d %v, want 500", st, body)
	}
	if e.processed(ev) || e.state().Tier != sluice.TierFree {
		t.Fatal("a failed event was marked processed or applied")
	}
	// The operator adds the price; Stripe delivers the same event again.
	e.cfg.Billing.TierPrices = map[string]string{sluice.TierPro: proPrice}
	if st, body := e.deliver(ev); st != http.StatusOK || body["status"] != "applied" {
		t.Fatalf("retry: %d %v", st, body)
	}
	if !e.processed(ev) || e.state().Tier != sluice.TierPro {
		t.Fatalf("after the retry: processed %v, tier %s", e.processed(ev), e.state().Tier)
	}
}

// Refunds and disputes take back unused credit of that purchase only:
// never more than was refunded, never below a zero balance.
func TestWebhookClawback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, " {}")
	if st, _ := e.deliver(e.creditPurchase("cs_a", "pi_a", 10_000_000)); st != http.StatusOK {
		t.Fatal(st)
	}
	// $7 of it is spent.
	if _, err := e.db.LedgerSettle(e.ctx, []postgres.LedgerEntry{{UserID: e.user, Kind: "usage", JobID: redistest.Name("job"),
		Period: sluice.CalendarPeriod(time.Now()), Model: "llama-2-7b", CreditMicros: 7_000_000}}); err != nil {
		t.Fatal(err)
	}
	charge := func(refunded int64) []byte {
		return e.event(redistest.Name("evt_"), "charge.refunded", e.next(), map[string]any{"id": "ch_a", "object": "charge",
			"customer": e.cust, "payment_intent": "pi_a", "amount": 1000, "amount_refunded": refunded})
	}
	// A $2 partial refund takes $2; a second refund to $10 in all takes the
	// remaining $1 of unused credit, not $8.
	e.deliver(charge(200))
	if c := e.credit(); c != 1_000_000 {
		t.Fatalf("after a $2 refund: credit %d, want 1000000", c)
	}
	e.deliver(charge(1000))
	if c := e.credit(); c != 0 {
		t.Fatalf("after the full refund: credit %d, want 0", c)
	}
	// A dispute on another purchase takes back what is left of it.
	e.deliver(e.creditPurchase("cs_b", "pi_b", 10_000_000))
	dispute := e.event(redistest.Name("evt_"), "charge.dispute.created", e.next(), map[string]any{"id": "dp_b", "object": "dispute",
		"charge": "ch_b", "payment_intent": "pi_b", "amount": 1000})
	if st, _ := e.deliver(dispute); st != http.StatusOK {
		t.Fatal(st)
	}
	if c := e.credit(); c != 0 {
		t.Fatalf("after the dispute: credit %d, want 0", c)
	}
	// A refund of a payment that bought no credit (a subscription) takes nothing.
	e.deliver(e.creditPurchase("cs_c", "pi_c", 5_000_000))
	e.deliver(e.event(redistest.Name("evt_"), "charge.refunded", e.next(), map[string]any{"id": "ch_sub", "object": "charge",
		"customer": e.cust, "payment_intent": "pi_subscription", "amount": 2900, "amount_refunded": 2900}))
	if c := e.credit(); c != 5_000_000 {
		t.Fatalf("a subscription refund took credit: %d, want 5000000", c)
	}
}

// testWriter sends the function's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// A tier change reaches a verifier's principal cache at once (pub/sub
// eviction after the commit), even with an hour-long cache TTL; the cached
// principal carries the paid period's label.
func TestWebhookTierReachesVerifierCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "\n    pro: "+proPrice)
	e.cfg.Env.KeyPepper = "pepper-for-the-test"
	e.cfg.Server.KeyCacheTTL = time.Hour
	v := app.NewVerifier(e.cfg, e.db, e.deps.Log)
	ctx, cancel := context.WithCancel(e.ctx)
	t.Cleanup(cancel)
	v.Subscribed(ctx, e.deps.Redis)
	key, _ := apikey.New()
	if _, err := e.db.CreateAPIKey(e.ctx, e.user, "t", apikey.Hash([]byte(e.cfg.Env.KeyPepper), key), apikey.Display(key), nil); err != nil {
		t.Fatal(err)
	}
	tierOf := func() (string, string) {
		t.Helper()
		p, err := v.Key(e.ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return p.Tier, p.Period
	}
	if tier, per := tierOf(); tier != sluice.TierFree || per != "" {
		t.Fatalf("before: %s %q", tier, per)
	}
	start := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	e.deliver(e.subscription("customer.subscription.created", "sub_v", "active", proPrice, e.next(), start))
	e.deliver(e.invoice("invoice.paid", "in_v", "sub_v", "paid", start))
	want := sluice.PeriodLabel(start)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if tier, per := tierOf(); tier == sluice.TierPro && per == want {
			break
		}
		if time.Now().After(deadline) {
			tier, per := tierOf()
			t.Fatalf("cached principal %s %q, want pro %s (eviction never arrived)", tier, per, want)
		}
	}
}

// A completed subscription Checkout gives the tier at once; the
// subscription's own later events decide after it.
func TestWebhookSubscriptionCheckout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "\n    pro: "+proPrice)
	at := e.next()
	ev := e.event(redistest.Name("evt_"), "checkout.session.completed", at, map[string]any{
		"id": "cs_sub", "object": "checkout.session", "client_reference_id": e.user, "customer": e.cust,
		"subscription": "sub_c", "payment_status": "paid", "mode": "subscription", "amount_total": 2900,
		"metadata": map[string]string{stripe.MetaUserID: e.user, stripe.MetaKind: stripe.KindSubscription, stripe.MetaTier: "pro"}})
	if st, body := e.deliver(ev); st != http.StatusOK || body["status"] != "applied" {
		t.Fatalf("%d %v", st, body)
	}
	if s := e.state(); s.Tier != sluice.TierPro || e.credit() != 0 {
		t.Fatalf("after a subscription checkout: tier %s, credit %d; want pro and no credit", s.Tier, e.credit())
	}
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	if st, _ := e.deliver(e.subscription("customer.subscription.updated", "sub_c", "unpaid", proPrice, at.Add(time.Second), start)); st != http.StatusOK {
		t.Fatal(st)
	}
	if s := e.state(); s.Tier != sluice.TierFree {
		t.Fatalf("an unpaid subscription leaves tier %s, want free", s.Tier)
	}
}
