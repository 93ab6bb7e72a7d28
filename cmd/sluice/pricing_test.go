package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// TestRequestAndGPUSecondPricing: a model priced per token, per request and
// per GPU-second. A job run through `sluice dev` with the openai-go SDK is
// charged, once, exactly tokens × prices + the request price + its engine
// time (as the worker measured it, carried on the completion) × the
// GPU-second price; /v1/models shows the prices.
func TestRequestAndGPUSecondPricing(t *testing.T) {
	t.Parallel()
	s := startStack(t, `
pricing:
  %CHAT%:
    input_tokens: 0.000001
    output_tokens: 0.000002
    per_request: 0.001
    per_gpu_second: 0.002
tiers:
  free:
    rate_limit: 1000
    included_credits: 0
    overage: postpaid
    overage_cap: 10
usage_rollup:
  schedule: 1s
`, "--inter-token-latency", "10ms")
	key := s.newKey(t, "priced-"+s.models[0]+"@example.com")
	c := s.client(key)
	ctx := context.Background()

	m, err := c.Models.Get(ctx, s.models[0])
	if err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Pricing map[string]int64 `json:"pricing"`
	}
	if err := json.Unmarshal([]byte(m.RawJSON()), &shown); err != nil || shown.Pricing["per_request_micros"] != 1000 ||
		shown.Pricing["per_gpu_second_micros"] != 2000 || shown.Pricing["input_micros_per_token"] != 1 {
		t.Fatalf("/v1/models pricing = %s (%v)", m.RawJSON(), err)
	}

	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.models[0],
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}, MaxTokens: openai.Int(20)},
		option.WithResponseInto(&resp), option.WithJSONSet("ignore_eos", true)); err != nil {
		t.Fatal(err)
	}
	jobID := resp.Header.Get("Sluice-Job-Id")
	_, prompt, completion, n := s.ledgerRow(t, jobID)
	if n != 1 || completion != 20 {
		t.Fatalf("ledger rows %d, completion %d", n, completion)
	}
	// The worker's engine time, as the completion script stored it.
	ms, err := testenv.Redis(t).HGet(ctx, rkey.JobKey(jobID), "engine_ms").Result()
	if err != nil {
		t.Fatal(err)
	}
	engineMS, _ := strconv.ParseInt(ms, 10, 64)
	if engineMS < 150 { // 20 tokens at 10 ms each
		t.Fatalf("engine_ms = %d, want at least 150", engineMS)
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var credit, overage int64
	if err := conn.QueryRow(ctx, `SELECT credit_micros, overage_micros FROM credit_ledger WHERE job_id = $1`, jobID).
		Scan(&credit, &overage); err != nil {
		t.Fatal(err)
	}
	// ceil(ms × 2000 / 1000) = 2 × ms.
	want := prompt*1 + completion*2 + 1000 + 2*engineMS
	if credit != 0 || overage != want {
		t.Fatalf("charged credit %d + overage %d; want overage %d (prompt %d, completion %d, engine %d ms)",
			credit, overage, want, prompt, completion, engineMS)
	}
	// Raw usage keeps the engine time, and the rollups' list price (folded
	// every second here) equals what the ledger charged, to the micro-dollar.
	var rawMS, listCost int64
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := conn.QueryRow(ctx, `SELECT r.engine_ms, COALESCE(d.cost_micros, -1) FROM inference_requests r
			LEFT JOIN usage_daily d ON d.user_id = r.user_id AND d.model_name = r.model_name
			WHERE r.job_id = $1`, jobID).Scan(&rawMS, &listCost)
		if err == nil && listCost >= 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("usage row or rollup missing: %v (cost %d)", err, listCost)
		}
	}
	if rawMS != engineMS || listCost != want {
		t.Fatalf("raw usage engine_ms %d (job %d), rollup cost %d micro-dollars (ledger %d)", rawMS, engineMS, listCost, want)
	}
	t.Logf("job %s: %d prompt + %d completion tokens, %d engine ms: charged %d micro-dollars; the rollup's list price agrees",
		jobID, prompt, completion, engineMS, overage)
}
