package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	stripeapi "github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/stripe"
)

// TestBuyCreditsEndToEnd: a free user uses up the included tokens, is
// refused with insufficient_quota, buys a credit pack (POST
// /v1/billing/checkout against stripe-mock, then Stripe's signed
// checkout.session.completed webhook), and is served again, paid from the
// credit. Everything through `sluice dev` with the openai-go SDK.
func TestBuyCreditsEndToEnd(t *testing.T) {
	t.Parallel()
	const whsec = "whsec_e2e_test"
	mock := testenv.StripeMock(t)
	s := startStackEnv(t, map[string]string{"STRIPE_SECRET_KEY": "sk_test_e2e", "STRIPE_API_BASE": mock, "STRIPE_WEBHOOK_SECRET": whsec,
		"SLUICE_TEST_CHAT_YAML": "\n      template_overhead_tokens: 1"}, `
pricing:
  %CHAT%:
    input_tokens: 0.000001
    output_tokens: 0.000002
tiers:
  free:
    rate_limit: 1000
    included_credits: 100
`)
	email := "buyer-" + s.models[0] + "@example.com"
	key := s.newKey(t, email)
	c := s.client(key)
	ctx := context.Background()
	ask := func() (string, error) {
		var resp *http.Response
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.models[0],
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(20)},
			option.WithResponseInto(&resp))
		if resp != nil {
			return resp.Header.Get("Sluice-Job-Id"), err
		}
		return "", err
	}

	// Each request holds 2+4 bytes + 8*2 + the template's 1 + 20 = 43
	// tokens: the 100 included run out within a few requests, then
	// insufficient_quota. A refusal counts once
	// every served job has settled (no hold in flight) and it still stands.
	quota := func(err error) bool {
		var apiErr *openai.Error
		return errors.As(err, &apiErr) && apiErr.StatusCode == 429 && apiErr.Code == "insufficient_quota"
	}
	var jobs []string
	refused := false
	for range 10 {
		job, err := ask()
		if quota(err) {
			for _, j := range jobs {
				s.ledgerRow(t, j)
			}
			if job, err = ask(); quota(err) {
				refused = true
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job)
	}
	if !refused || len(jobs) == 0 {
		t.Fatalf("served %d, refused %v: the included tokens never ran out", len(jobs), refused)
	}
	served := len(jobs)

	// Buy $10 of credit: a Checkout Session (stripe-mock), then Stripe's webhook.
	st, body := s.doAs(t, key, "POST", "/v1/billing/checkout", `{"kind":"credits","pack":"usd_10"}`)
	session, _ := body["id"].(string)
	if st != 200 || session == "" || body["url"] == "" {
		t.Fatalf("checkout: %d %v", st, body)
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var userID, customer string
	if err := conn.QueryRow(ctx, `SELECT id, COALESCE(stripe_customer_id, '') FROM users WHERE email = $1`, email).Scan(&userID, &customer); err != nil || customer == "" {
		t.Fatalf("user %s customer %q: %v", userID, customer, err)
	}
	// What Stripe sends once the user has paid: the session with the
	// metadata Sluice gave it.
	ev, _ := json.Marshal(map[string]any{"id": testenv.Name("evt_"), "object": "event", "type": "checkout.session.completed",
		"api_version": stripeapi.APIVersion, "created": time.Now().Unix(), "data": map[string]any{"object": map[string]any{
			"id": session, "object": "checkout.session", "client_reference_id": userID, "customer": customer,
			"payment_intent": testenv.Name("pi_"), "payment_status": "paid", "mode": "payment", "amount_total": 1000,
			"metadata": map[string]string{stripe.MetaUserID: userID, stripe.MetaKind: stripe.KindCredits,
				stripe.MetaPack: "usd_10", stripe.MetaMicros: "10000000"}}}})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: ev, Secret: whsec})
	req, _ := http.NewRequest("POST", s.base+"/webhooks/stripe", bytes.NewReader(signed.Payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()

	// Served again: what the included tokens left (under one request's
	// worst case, but maybe a few requests' real use), then the credit pays.
	var spent, balance int64
	after := 0
	for ; after < 10 && spent == 0; after++ {
		job, err := ask()
		if err != nil {
			t.Fatalf("after buying credit: %v", err)
		}
		s.ledgerRow(t, job)
		var n int64
		if err := conn.QueryRow(ctx, `SELECT -credit_micros FROM credit_ledger WHERE job_id = $1`, job).Scan(&n); err != nil {
			t.Fatal(err)
		}
		spent += n
	}
	if err := conn.QueryRow(ctx, `SELECT SUM(credit_micros) FROM credit_ledger WHERE user_id = $1`, userID).Scan(&balance); err != nil ||
		spent <= 0 || balance != 10_000_000-spent {
		t.Fatalf("credit spent %d, balance %d (%v); want spent > 0 and balance 10000000 - spent", spent, balance, err)
	}
	t.Logf("served %d on the included tokens, refused insufficient_quota, bought $10 (session %s), served %d more, the last paid from credit (%d micro-dollars); balance %d",
		served, session, after, spent, balance)
}

// doAs sends a request with key.
func (s *stack) doAs(t *testing.T, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
	return resp.StatusCode, out
}
