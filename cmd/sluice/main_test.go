package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/webhook"
)

// stack runs the real `sluice dev` entry point on a free port against real
// PostgreSQL (a schema of its own), real Redis and one simulator per model.
type stack struct {
	base   string // http://127.0.0.1:port
	key    string // admin key
	dbURL  string
	state  string // the --dir of `sluice dev`
	models []string
	env    map[string]string
}

func startStack(t *testing.T, extraYAML string, simArgs ...string) *stack {
	t.Helper()
	return startStackEnv(t, nil, extraYAML, simArgs...)
}

// startStackEnv is startStack with more environment (extraEnv) and a
// configuration that may name the first model as %CHAT% and bring its own
// pricing block.
func startStackEnv(t *testing.T, extraEnv map[string]string, extraYAML string, simArgs ...string) *stack {
	t.Helper()
	sim := testenv.Sim(t)
	dir := t.TempDir()
	chat, small := testenv.Name("e2e-chat"), testenv.Name("e2e-small")
	// The chat model's own engine (a proxy in front of a simulator) if the
	// test brings one, and more of its keys.
	chatEngine := extraEnv["SLUICE_TEST_CHAT_YAML"]
	if name := extraEnv["SLUICE_TEST_CHAT"]; name != "" {
		chat = name
		chatEngine += "\n      endpoints: [" + extraEnv["SLUICE_TEST_CHAT_ENDPOINT"] + "]"
	}
	pricing := "pricing: {}"
	if strings.Contains(extraYAML, "\npricing:") {
		pricing = ""
	}
	extraYAML = strings.ReplaceAll(extraYAML, "%CHAT%", chat)
	cfg := fmt.Sprintf(`
inference:
  models:
    - name: %s
      max_batch_size: 8
      max_model_len: 1024%s
    - name: %s
      max_batch_size: 4
      max_model_len: 256
%s
jobs:
  webhooks:
    allow_private: true
%s`, chat, chatEngine, small, pricing, extraYAML)
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &stack{dbURL: pgtest.NewURL(t), models: []string{chat, small}, state: filepath.Join(dir, "state")}
	if d := extraEnv["SLUICE_TEST_STATE_DIR"]; d != "" {
		s.state = d
	}
	s.env = map[string]string{
		"DATABASE_URL":          s.dbURL,
		"REDIS_URL":             testenv.RedisURL(),
		"SLUICE_KEY_PEPPER":     testenv.Pepper,
		"SLUICE_WEBHOOK_SECRET": "whsec-test",
		"SLUICE_CONFIG":         cfgPath,
		// Port 0: the stack binds its own and prints it (a port picked
		// here first could be taken by a parallel test before it binds).
		"SLUICE_ADDR": "127.0.0.1:0",
		"SLUICE_SIM":  sim,
	}
	for k, v := range extraEnv {
		s.env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"dev", "--dir", s.state, "--sim-args", strings.Join(simArgs, " ")}, pw, testWriter{t}, func(k string) string { return s.env[k] })
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("sluice dev exited with %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("sluice dev did not stop within 30s of SIGTERM")
		}
	})
	re := regexp.MustCompile(`Sluice is running at (http://\S+)`)
	sc := bufio.NewScanner(pr)
	deadline := time.AfterFunc(60*time.Second, func() { pw.CloseWithError(errors.New("timeout")) })
	defer deadline.Stop()
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			s.base = m[1]
			break
		}
	}
	if s.base == "" {
		t.Fatalf("sluice dev did not start: %v", sc.Err())
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck
	key, err := os.ReadFile(filepath.Join(s.state, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	s.key = strings.TrimSpace(string(key))
	return s
}

func (s *stack) client(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.base+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

type usageRow struct {
	prompt, completion int64
	status, model      string
}

func (s *stack) usage(t *testing.T, jobID string) (usageRow, int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var r usageRow
	var n int
	// The worker flushes usage in batches: under a loaded make test (both
	// Redis runs at once) a row has taken more than 10 s to land.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM inference_requests WHERE job_id = $1`, jobID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n == 0 {
		return r, 0
	}
	err = conn.QueryRow(ctx, `SELECT prompt_tokens, completion_tokens, status, model_name FROM inference_requests WHERE job_id = $1`, jobID).
		Scan(&r.prompt, &r.completion, &r.status, &r.model)
	if err != nil {
		t.Fatal(err)
	}
	return r, n
}

// TestEndToEndOpenAISDK drives the real stack with the official openai-go SDK:
// models, chat, streamed chat with usage, completion; then checks that each
// job's usage row equals what the SDK reported, exactly once.
func TestEndToEndOpenAISDK(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	ctx := context.Background()
	c := s.client(s.key)
	chat := s.models[0]

	page, err := c.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if len(ids) != 2 || ids[0] != s.models[0] || ids[1] != s.models[1] {
		t.Fatalf("models = %v, want %v", ids, s.models)
	}

	var resp *http.Response
	cc, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     chat,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		MaxTokens: openai.Int(12),
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if cc.Choices[0].Message.Content == "" || cc.Usage.CompletionTokens == 0 || cc.Usage.CompletionTokens > 12 {
		t.Fatalf("chat completion: %+v", cc)
	}
	row, n := s.usage(t, resp.Header.Get("Sluice-Job-Id"))
	if n != 1 || row.prompt != cc.Usage.PromptTokens || row.completion != cc.Usage.CompletionTokens || row.status != "succeeded" {
		t.Fatalf("usage row %+v (n=%d), SDK usage %+v", row, n, cc.Usage)
	}

	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:         chat,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream please")},
		MaxTokens:     openai.Int(10),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithResponseInto(&resp))
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if chunks < 3 || acc.Choices[0].Message.Content == "" || acc.Usage.TotalTokens == 0 {
		t.Fatalf("stream: %d chunks, %+v", chunks, acc.ChatCompletion)
	}
	row, n = s.usage(t, resp.Header.Get("Sluice-Job-Id"))
	if n != 1 || row.prompt != acc.Usage.PromptTokens || row.completion != acc.Usage.CompletionTokens {
		t.Fatalf("streamed usage row %+v (n=%d), SDK usage %+v", row, n, acc.Usage)
	}

	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:     openai.CompletionNewParamsModel(chat),
		Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(8),
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	row, n = s.usage(t, resp.Header.Get("Sluice-Job-Id"))
	if n != 1 || row.prompt != comp.Usage.PromptTokens || row.completion != comp.Usage.CompletionTokens {
		t.Fatalf("completion usage row %+v (n=%d), SDK usage %+v", row, n, comp.Usage)
	}

	// Errors come back OpenAI-shaped and the SDK decodes them.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "no-such-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("unknown model: %v", err)
	}
	bad := s.client("sk-sluice-notarealkey")
	if _, err := bad.Models.List(ctx); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("bad key: %v", err)
	}
	// The engine's own 400 passes through: the small model has a 256-token context.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.models[1],
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("word ", 240))},
		MaxTokens: openai.Int(200)})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
		t.Fatalf("over-long prompt: %v", err)
	}
}

func (s *stack) do(t *testing.T, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck
	return resp.StatusCode, out
}

// TestAsyncJobsAndWebhook covers POST/GET/DELETE /v1/jobs, idempotency, and
// the signed webhook.
func TestAsyncJobsAndWebhook(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	var mu sync.Mutex
	got := map[string][]byte{}
	hook := make(chan string, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte("whsec-test"), r.Header.Get(webhook.Header), b, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(400)
			return
		}
		var ev struct {
			Data struct{ ID string } `json:"data"`
		}
		json.Unmarshal(b, &ev) //nolint:errcheck
		mu.Lock()
		got[ev.Data.ID] = b
		mu.Unlock()
		hook <- ev.Data.ID
	})}
	port, _ := devstack.FreePort()
	go srv.ListenAndServe() //nolint:errcheck
	srv.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	t.Cleanup(func() { srv.Close() })
	go srv.ListenAndServe() //nolint:errcheck

	body := fmt.Sprintf(`{"url":"/v1/chat/completions","webhook_url":"http://%s/hook","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":5}}`, srv.Addr, s.models[0])
	st, j := s.do(t, "POST", "/v1/jobs", body, "Idempotency-Key", "k1")
	if st != 202 || j["status"] != "queued" {
		t.Fatalf("create: %d %v", st, j)
	}
	id := j["id"].(string)
	st, j2 := s.do(t, "POST", "/v1/jobs", body, "Idempotency-Key", "k1")
	if st != 202 || j2["id"] != id {
		t.Fatalf("idempotent retry made another job: %d %v", st, j2)
	}
	select {
	case hid := <-hook:
		if hid != id {
			t.Fatalf("webhook for %s, want %s", hid, id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no webhook")
	}
	st, j = s.do(t, "GET", "/v1/jobs/"+id, "")
	if st != 200 || j["status"] != "succeeded" || j["result"] == nil {
		t.Fatalf("get: %d %v", st, j)
	}
	if _, n := s.usage(t, id); n != 1 {
		t.Fatalf("usage rows for the async job: %d", n)
	}

	// Another user cannot see it.
	other := s.newKey(t, "other@example.com")
	req, _ := http.NewRequest("GET", s.base+"/v1/jobs/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("another user's job: %d, want 404", resp.StatusCode)
	}

	// Bad inputs: nothing enqueued.
	for _, c := range []struct {
		body  string
		param string
	}{
		{`{"url":"/v1/embeddings","body":{}}`, "url"},
		{fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[]}}`, s.models[0]), "body.messages"},
		{fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"stream":true,"messages":[{"role":"user","content":"x"}]}}`, s.models[0]), "body.stream"},
	} {
		st, e := s.do(t, "POST", "/v1/jobs", c.body)
		errObj, _ := e["error"].(map[string]any)
		if st != 400 || errObj["param"] != c.param {
			t.Errorf("%s: %d %v, want 400 param %s", c.body, st, e, c.param)
		}
	}
}

func (s *stack) newKey(t *testing.T, email string) string {
	t.Helper()
	return strings.TrimSpace(s.cli(t, "key", "create", "--email", email))
}

// cli runs a sluice command against the stack and returns what it printed.
func (s *stack) cli(t *testing.T, args ...string) string {
	t.Helper()
	var out strings.Builder
	if code := Main(context.Background(), args, &out, io.Discard, func(k string) string { return s.env[k] }); code != 0 {
		t.Fatalf("sluice %v exited %d: %s", args, code, out.String())
	}
	return out.String()
}

// TestCancel cancels a running async job through DELETE, and drops a
// streaming client half-way: each job ends cancelled with the tokens it
// produced recorded once, and nothing runs on.
func TestCancel(t *testing.T) {
	t.Parallel()
	s := startStack(t, "", "--inter-token-latency", "10ms")
	body := fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":900,"ignore_eos":true}}`, s.models[0])
	_, j := s.do(t, "POST", "/v1/jobs", body)
	id := j["id"].(string)
	for j["status"] != "running" {
		time.Sleep(20 * time.Millisecond)
		_, j = s.do(t, "GET", "/v1/jobs/"+id, "")
	}
	time.Sleep(200 * time.Millisecond)
	if st, j := s.do(t, "DELETE", "/v1/jobs/"+id, ""); st != 200 {
		t.Fatalf("cancel: %d %v", st, j)
	}
	deadline := time.Now().Add(10 * time.Second)
	for j["status"] != "cancelled" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		_, j = s.do(t, "GET", "/v1/jobs/"+id, "")
	}
	if j["status"] != "cancelled" {
		t.Fatalf("after cancel: %v", j)
	}
	row, n := s.usage(t, id)
	if n != 1 || row.status != "cancelled" || row.completion >= 900 {
		t.Fatalf("cancelled job's usage: %+v n=%d", row, n)
	}
	if st, _ := s.do(t, "DELETE", "/v1/jobs/job_0000aaaaaaaaaaaaaaaaaaaaaaaa", ""); st != 404 {
		t.Fatalf("cancel of an unknown job: %d", st)
	}

	// A streaming client that goes away cancels its job upstream.
	ctx, cancel := context.WithCancel(context.Background())
	var resp *http.Response
	c := s.client(s.key)
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: s.models[0], Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("long")},
		MaxTokens: openai.Int(900)}, option.WithResponseInto(&resp), option.WithJSONSet("ignore_eos", true))
	for i := 0; i < 10 && stream.Next(); i++ {
	}
	cancel()
	stream.Close()
	jobID := resp.Header.Get("Sluice-Job-Id")
	deadline = time.Now().Add(10 * time.Second)
	var row2 usageRow
	for time.Now().Before(deadline) {
		if row2, n = s.usage(t, jobID); n == 1 {
			break
		}
	}
	if n != 1 || row2.status != "cancelled" || row2.completion < 5 || row2.completion >= 900 {
		t.Fatalf("abandoned stream's usage: %+v n=%d", row2, n)
	}
}

// testWriter sends the stack's log to the test log (shown on failure or -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
