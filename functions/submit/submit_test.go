//go:build !shrinkwrap

package submit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
)

// env is one submit function in front of a real worker, simulator, Redis
// queue and PostgreSQL schema, with a user and an API key.
type env struct {
	url   string
	model string
	key   string // the user's API key
	db    *postgres.DB
	cfg   *config.Config
	rdb   redis.UniversalClient
}

// setup starts the submit handler from submit.New, a worker on the
// simulator, and the settler, all torn down when the test ends.
func setup(t *testing.T) *env { t.Helper(); return setupWith(t, true) }

// setupWith is setup, with admission (limits, funds, the response cache) or
// without (Deps.Admission nil: everything is admitted).
func setupWith(t *testing.T, admit bool) *env {
	t.Helper()
	return setupEngine(t, admit, func(url string) string { return url }, "")
}

// setupEngine is setupWith with the worker reaching the simulator at
// via(its URL) (a proxy in front of it) and prefixCache as the
// inference.prefix_cache block's flow-style body ("" for the defaults).
func setupEngine(t *testing.T, admit bool, via func(string) string, prefixCache string) *env {
	t.Helper()
	return setupYAML(t, admit, via, prefixCache, "")
}

// setupYAML is setupEngine with more configuration appended (a tiers
// block, say).
func setupYAML(t *testing.T, admit bool, via func(string) string, prefixCache, extra string) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := testenv.Name("submit")
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 1024, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	if prefixCache == "" {
		prefixCache = "{}"
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 1024, endpoints: [%q]}], prefix_cache: %s}
pricing: null
worker: {usage_flush: 20ms}
`, model, via(sim.URL), prefixCache) + extra))
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, ctx, cancel, cfg, model, redisq.Options{})
	log, db, rdb, q, adm := b.log, b.db, b.rdb, b.q, b.adm
	v := app.NewVerifier(cfg, db, log)
	d := submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: v}
	if admit {
		d.Admission = adm
	}
	srv := httptest.NewServer(submit.New(d))
	t.Cleanup(srv.Close)
	e := &env{url: srv.URL, model: model, db: db, cfg: cfg, rdb: rdb}
	e.key = e.newKey(t, model+"@example.com")
	return e
}

// backend is what a test stack runs behind the submit handler: a fresh
// schema, Redis, the queue, admission with its settler, and a worker.
type backend struct {
	log *slog.Logger
	db  *postgres.DB
	rdb redis.UniversalClient
	q   *redisq.Queue
	adm *admission.Admitter
}

// startBackend sets cfg's key pepper and starts the settler and the worker
// (named after name) until ctx ends; cancel (ctx's) stops them when the
// test ends, and a worker that fails is a test error. qo is the queue's
// options beyond the error encoding and sync retention, which it sets.
func startBackend(t *testing.T, ctx context.Context, cancel context.CancelFunc, cfg *config.Config, name string, qo redisq.Options) *backend {
	t.Helper()
	cfg.Env.KeyPepper = strings.Repeat("p", 32)
	b := &backend{log: slog.New(slog.DiscardHandler), db: pgtest.New(t), rdb: testenv.Redis(t)}
	qo.EncodeError, qo.SyncRetention = openai.EncodeError, cfg.Jobs.SyncRetention
	b.q = redisq.New(b.rdb, qo)
	b.adm = admission.New(cfg, b.rdb, b.db, b.log)
	go b.adm.Settler(admission.ConsumerName("t-" + name)).Run(ctx)
	w, err := pool.New(pool.Deps{Config: cfg, Log: b.log, Queue: b.q, Usage: b.db, Name: "t-" + name}) // db stores responses too
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		// A worker stopped while it is still starting returns the
		// cancellation; anything else is a failure.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Error(err)
		}
	})
	return b
}

// newKey creates a user and an API key for them, as the auth function does.
func (e *env) newKey(t *testing.T, email string) string {
	t.Helper()
	ctx := context.Background()
	u, err := e.db.UpsertUser(ctx, email, "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: "test", Hash: apikey.Hash([]byte(e.cfg.Env.KeyPepper), key),
		Prefix: apikey.Display(key)}); err != nil {
		t.Fatal(err)
	}
	return key
}

// do sends a request with the key and decodes a JSON answer into out (if any).
func (e *env) do(t *testing.T, method, path, key, body string, out any) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if out != nil {
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp
}

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestChatCompletion(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var out struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct{ Role, Content string } `json:"message"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	resp := e.do(t, "POST", "/v1/chat/completions", e.key,
		fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello there"}],"max_tokens":8}`, e.model), &out)
	if resp.StatusCode != 200 || out.Object != "chat.completion" || len(out.Choices) != 1 || out.Choices[0].Message.Content == "" {
		t.Fatalf("%d %+v", resp.StatusCode, out)
	}
	if out.Usage.PromptTokens == 0 || out.Usage.CompletionTokens == 0 || out.Usage.CompletionTokens > 8 {
		t.Fatalf("usage %+v", out.Usage)
	}
	if resp.Header.Get("Sluice-Job-Id") == "" && resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("no job or request id header: %v", resp.Header)
	}
}

// TestWithoutAdmission: with no Admitter every request is admitted, reserves
// nothing and carries no rate-limit headers; async jobs still run.
func TestWithoutAdmission(t *testing.T) {
	t.Parallel()
	e := setupWith(t, false)
	resp := e.do(t, "POST", "/v1/chat/completions", e.key,
		fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0}`, e.model), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for h := range resp.Header {
		if strings.HasPrefix(strings.ToLower(h), "x-ratelimit-") || h == "Sluice-Cache" {
			t.Errorf("header %s written without admission", h)
		}
	}
	var job struct{ ID, Status string }
	if r := e.do(t, "POST", "/v1/jobs", e.key, fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}}`, e.model), &job); r.StatusCode != 202 || job.ID == "" {
		t.Fatalf("async job: %d %+v", r.StatusCode, job)
	}
	for deadline := time.Now().Add(20 * time.Second); job.Status != "succeeded"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job still %s", job.Status)
		}
		e.do(t, "GET", "/v1/jobs/"+job.ID, e.key, "", &job)
	}
}

func TestStreamedCompletion(t *testing.T) {
	t.Parallel()
	e := setup(t)
	resp := e.do(t, "POST", "/v1/completions", e.key,
		fmt.Sprintf(`{"model":%q,"prompt":"once upon a time","max_tokens":6,"stream":true}`, e.model), nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	chunks, done := 0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			break
		}
		var c struct {
			Object string `json:"object"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil || c.Object != "text_completion" {
			t.Fatalf("chunk %q: %v", line, err)
		}
		chunks++
	}
	if !done || chunks == 0 {
		t.Fatalf("%d chunks, [DONE] %v", chunks, done)
	}
}

// TestAsyncJob: an async job is accepted, polled to its result, readable
// by its owner only, and a finished job's cancel leaves it as it was.
func TestAsyncJob(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var created struct{ ID, Object, Status string }
	resp := e.do(t, "POST", "/v1/jobs", e.key, fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}}`, e.model), &created)
	if resp.StatusCode != http.StatusAccepted || created.Object != "job" || created.Status != "queued" || created.ID == "" {
		t.Fatalf("%d %+v", resp.StatusCode, created)
	}
	var js struct {
		Status string          `json:"status"`
		Result json.RawMessage `json:"result"`
	}
	for deadline := time.Now().Add(30 * time.Second); js.Status != "succeeded"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job still %q", js.Status)
		}
		if r := e.do(t, "GET", "/v1/jobs/"+created.ID, e.key, "", &js); r.StatusCode != 200 {
			t.Fatalf("GET: %d", r.StatusCode)
		}
		if js.Status == "failed" || js.Status == "cancelled" {
			t.Fatalf("job %s", js.Status)
		}
	}
	if !bytes.Contains(js.Result, []byte(`"chat.completion"`)) {
		t.Fatalf("result %s", js.Result)
	}
	other := e.newKey(t, "other-"+e.model+"@example.com")
	var ae apiError
	if r := e.do(t, "GET", "/v1/jobs/"+created.ID, other, "", &ae); r.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "not_found" {
		t.Fatalf("another user's GET: %d %+v", r.StatusCode, ae)
	}
	if r := e.do(t, "DELETE", "/v1/jobs/"+created.ID, other, "", &ae); r.StatusCode != 404 {
		t.Fatalf("another user's DELETE: %d", r.StatusCode)
	}
	if r := e.do(t, "DELETE", "/v1/jobs/"+created.ID, e.key, "", &js); r.StatusCode != 200 || js.Status != "succeeded" {
		t.Fatalf("cancelling a finished job: %d %s", r.StatusCode, js.Status)
	}
}

// TestErrors: OpenAI-shaped errors with the right status and code.
func TestErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cases := []struct {
		name, method, path, key, body string
		status                        int
		code, param                   string
	}{
		{"no key", "POST", "/v1/chat/completions", "", `{}`, 401, "invalid_api_key", ""},
		{"bad key", "POST", "/v1/chat/completions", "sk-nope", `{}`, 401, "invalid_api_key", ""},
		{"unknown model", "POST", "/v1/chat/completions", e.key, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found", "model"},
		{"bad json", "POST", "/v1/chat/completions", e.key, `{"model":`, 400, "invalid_json", ""},
		{"case variant", "POST", "/v1/chat/completions", e.key, fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"MESSAGES":[]}`, e.model), 400, "duplicate_key", "MESSAGES"},
		{"unknown field", "POST", "/v1/chat/completions", e.key, fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"frobnicate":1}`, e.model), 400, "unknown_parameter", "frobnicate"},
		{"job url", "POST", "/v1/jobs", e.key, `{"url":"/v1/embeddings","body":{}}`, 400, "invalid_value", "url"},
		{"unknown job", "GET", "/v1/jobs/job_nope", e.key, ``, 404, "not_found", ""},
		{"unknown route", "GET", "/v1/nope", e.key, ``, 404, "not_found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ae apiError
			r := e.do(t, c.method, c.path, c.key, c.body, &ae)
			if r.StatusCode != c.status || ae.Error.Message == "" || ae.Error.Type == "" || ae.Error.Code == nil || *ae.Error.Code != c.code {
				t.Fatalf("%d %+v, want %d %s", r.StatusCode, ae.Error, c.status, c.code)
			}
			if c.param != "" && (ae.Error.Param == nil || *ae.Error.Param != c.param) {
				t.Fatalf("param %v, want %s", ae.Error.Param, c.param)
			}
		})
	}
}
