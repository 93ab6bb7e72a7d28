package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// ledgerRow waits for a job's ledger row.
func (s *stack) ledgerRow(t *testing.T, jobID string) (included, prompt, completion int64, n int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM credit_ledger WHERE job_id = $1`, jobID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
	}
	if n == 0 {
		return 0, 0, 0, 0
	}
	err = conn.QueryRow(ctx, `SELECT included_tokens, prompt_tokens, completion_tokens FROM credit_ledger WHERE job_id = $1`, jobID).
		Scan(&included, &prompt, &completion)
	if err != nil {
		t.Fatal(err)
	}
	return included, prompt, completion, n
}

// chat posts a chat completion with key and returns the answer, its body
// closed (the status and headers are what admission tests look at).
func (s *stack) chat(t *testing.T, key, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", s.base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestAdmissionEndToEnd: rate-limit headers on every answer; a second
// concurrent request past the tier's concurrency gets 429; a stream the
// client drops half-way is charged (once) for the tokens it produced and its
// slot comes back.
func TestAdmissionEndToEnd(t *testing.T) {
	t.Parallel()
	s := startStack(t, `
tiers:
  free:
    rate_limit: 100
    concurrency: 1
    tokens_per_minute: 100000
    included_credits: 100000
`, "--inter-token-latency", "10ms")
	key := s.newKey(t, "adm-"+s.models[0]+"@example.com")
	post := func(body string) *http.Response { return s.chat(t, key, body) }
	short := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":5}`, s.models[0])
	resp := post(short)
	if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-requests") != "100" ||
		resp.Header.Get("x-ratelimit-remaining-requests") != "99" || resp.Header.Get("x-ratelimit-limit-tokens") != "100000" {
		t.Fatalf("first request: %d %v", resp.StatusCode, resp.Header)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var sresp *http.Response
	c0 := s.client(key)
	stream := c0.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: s.models[0], Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("long")},
		MaxTokens: openai.Int(900)}, option.WithResponseInto(&sresp), option.WithJSONSet("ignore_eos", true))
	for i := 0; i < 10 && stream.Next(); i++ {
	}
	// The one slot is taken: a second request is refused, with headers.
	if r := post(short); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" || r.Header.Get("x-ratelimit-remaining-requests") == "" {
		t.Fatalf("concurrent request: %d %v", r.StatusCode, r.Header)
	}
	cancel()
	stream.Close()
	jobID := sresp.Header.Get("Sluice-Job-Id")
	inc, p, c, n := s.ledgerRow(t, jobID)
	row, un := s.usage(t, jobID)
	if n != 1 || un != 1 || c < 10 || c >= 900 || p != row.prompt || c != row.completion || inc != p+c {
		t.Fatalf("dropped stream: ledger included=%d prompt=%d completion=%d n=%d; usage %+v n=%d", inc, p, c, n, row, un)
	}
	// The slot came back.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := post(short); r.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropped stream's slot never came back")
		}
	}
}

// TestResponseCache: an opted-in deterministic request is answered from the
// cache the second time, without reaching an engine, and settled as a cache
// row in the ledger; without the header nothing is cached.
func TestResponseCache(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	key := s.newKey(t, "cache-"+s.models[0]+"@example.com")
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"cache me"}],"max_tokens":5,"temperature":0}`, s.models[0])
	post := func(hdr string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", s.base+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if hdr != "" {
			req.Header.Set("Sluice-Cache", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	r1, b1 := post("on")
	if r1.StatusCode != 200 || r1.Header.Get("Sluice-Cache") != "miss" {
		t.Fatalf("first: %d %v", r1.StatusCode, r1.Header)
	}
	r2, b2 := post("on")
	if r2.StatusCode != 200 || r2.Header.Get("Sluice-Cache") != "hit" || b2 != b1 {
		t.Fatalf("second: %d %v\n%s\n%s", r2.StatusCode, r2.Header, b1, b2)
	}
	hit := r2.Header.Get("Sluice-Job-Id")
	if _, p, c, n := s.ledgerRow(t, hit); n != 1 || p+c == 0 {
		t.Fatalf("cache hit's ledger row: n=%d tokens=%d", n, p+c)
	}
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var kind string
	var rows int
	if err := conn.QueryRow(context.Background(), `SELECT kind, (SELECT count(*) FROM inference_requests WHERE job_id = $1)
		FROM credit_ledger WHERE job_id = $1`, hit).Scan(&kind, &rows); err != nil || kind != "cache" || rows != 0 {
		t.Fatalf("cache hit: ledger kind %q, usage rows %d (want cache, 0: no engine): %v", kind, rows, err)
	}
	if r3, _ := post(""); r3.Header.Get("Sluice-Cache") != "" {
		t.Fatalf("without the header: %v", r3.Header)
	}
}
