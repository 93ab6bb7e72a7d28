//go:build !shrinkwrap

package submit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// embedEnv is a stack with embedding models: emb and emb2 on the
// simulator, dead (its endpoint a port nobody listens on) falling back to
// emb, then emb2, and gen, a generate model. Prices per input token differ (2, 7 and
// 3 micro-dollars), so a charge names the model it was priced at.
type embedEnv struct {
	*env
	emb, emb2, dead, gen string
	q                    *redisq.Queue
	metrics              string // the /metrics URL
}

// Input prices in micro-dollars per token.
const embPrice, emb2Price, deadPrice = 2, 7, 3

func setupEmbed(t *testing.T) *embedEnv {
	t.Helper()
	base := testenv.Name("emb")
	x := &embedEnv{emb: base, emb2: base + "-2", dead: base + "-dead", gen: base + "-gen"}
	// The simulator answers /v1/embeddings for any model name it is sent
	// (chat only for its own), so one serves all three live models; the
	// SDK tests run a simulator per model.
	x.start(t, base, func(sim string, dead int) string {
		return fmt.Sprintf(`
inference:
  models:
    - {name: %[1]s, task: embed, max_batch_size: 4, max_model_len: 512, endpoints: [%[5]q]}
    - {name: %[2]s, task: embed, max_batch_size: 4, max_model_len: 512, endpoints: [%[5]q]}
    - {name: %[3]s, task: embed, max_batch_size: 4, max_model_len: 512, endpoints: ["http://127.0.0.1:%[6]d"], fallbacks: [%[1]s, %[2]s]}
    - {name: %[4]s, max_batch_size: 4, max_model_len: 512, endpoints: [%[5]q]}
pricing:
  %[1]s: {input_tokens: 0.000002, output_tokens: 0.000011}
  %[2]s: {input_tokens: 0.000007, output_tokens: 0.000013}
  %[3]s: {input_tokens: 0.000003, output_tokens: 0.000017}
  %[4]s: {input_tokens: 0.000001, output_tokens: 0.000001}
tiers:
  free: {included_credits: 0, rate_limit: unlimited}
server: {request_timeout: 30s}
worker: {usage_flush: 20ms}
dispatch: {health_interval: 200ms}
`, x.emb, x.emb2, x.dead, x.gen, sim, dead)
	})
	return x
}

// start runs one simulator (with simArgs), the config yaml returns for its
// URL and a port nobody listens on, a worker and settler, and submit.New
// behind the telemetry handler (for /metrics); all stop when the test ends.
func (x *embedEnv) start(t *testing.T, base string, yaml func(sim string, dead int) string, simArgs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), base, 512, 8, "", simArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	dead, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(yaml(sim.URL, dead)))
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, ctx, cancel, cfg, base, redisq.Options{MaxQueue: cfg.Jobs.MaxQueue})
	log, db, rdb, q, adm := b.log, b.db, b.rdb, b.q, b.adm
	tel, err := telemetry.New(ctx, config.Telemetry{}, log, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: app.NewVerifier(cfg, db, log), Admission: adm})
	srv := httptest.NewServer(telemetry.Handler(tel, nil, log, h))
	t.Cleanup(srv.Close)
	x.env = &env{url: srv.URL, model: base, db: db, cfg: cfg, rdb: rdb}
	x.q, x.metrics = q, srv.URL+"/metrics"
}

// healthy waits until a worker has published one of model's endpoints
// healthy.
func (x *embedEnv) healthy(t *testing.T, model string) {
	t.Helper()
	waitFor(t, model+"'s endpoint to be published healthy", func() bool {
		ws, err := x.q.Endpoints(context.Background(), model)
		return err == nil && redisq.Health(ws).Healthy > 0
	})
}

// fund creates a user with a key and micros of prepaid credit (no included
// tokens on the free tier here), in the ledger and in admission's counters.
func (x *embedEnv) fund(t *testing.T, name string, micros int64) (key, userID string) {
	t.Helper()
	ctx := context.Background()
	email := name + "-" + x.emb + "@example.com"
	key = x.newKey(t, email)
	u, err := x.db.UpsertUser(ctx, email, "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	id, err := x.db.LedgerGrant(ctx, u.ID, time.Now().UTC().Format("2006-01"), micros, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, x.rdb, u.ID, id, micros); err != nil {
		t.Fatal(err)
	}
	return key, u.ID
}

// settled waits for the job's ledger row and usage row and returns them.
type settledJob struct {
	LedgerModel               string
	Prompt, Completion, Micro int64 // the ledger's tokens and credit change
	UsageModel, Requested     string
	UsagePrompt               int64
}

func (x *embedEnv) settled(t *testing.T, jobID string) settledJob {
	t.Helper()
	ctx := context.Background()
	var s settledJob
	waitFor(t, "the job's ledger and usage rows", func() bool {
		err := x.db.Pool.QueryRow(ctx, `SELECT l.model_name, l.prompt_tokens, l.completion_tokens, l.credit_micros,
			r.model_name, coalesce(r.requested_model, ''), r.prompt_tokens
			FROM credit_ledger l JOIN inference_requests r ON r.job_id = l.job_id WHERE l.job_id = $1`, jobID).Scan(
			&s.LedgerModel, &s.Prompt, &s.Completion, &s.Micro, &s.UsageModel, &s.Requested, &s.UsagePrompt)
		return err == nil
	})
	return s
}

type embeddingsAnswer struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Index     int             `json:"index"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens     int64  `json:"prompt_tokens"`
		TotalTokens      int64  `json:"total_tokens"`
		CompletionTokens *int64 `json:"completion_tokens"`
	} `json:"usage"`
}

// TestEmbeddings: a string, a batch of strings and token ids run on the
// engine's /v1/embeddings and are billed exactly what the engine counted, at
// the model's input price and nothing for output; token ids count exactly.
func TestEmbeddings(t *testing.T) {
	t.Parallel()
	x := setupEmbed(t)
	key, _ := x.fund(t, "rich", 1_000_000)
	var models struct {
		Data []struct{ ID, Task string } `json:"data"`
	}
	x.do(t, "GET", "/v1/models", key, "", &models)
	tasks := map[string]string{}
	for _, m := range models.Data {
		tasks[m.ID] = m.Task
	}
	if tasks[x.emb] != "embed" || tasks[x.dead] != "embed" || tasks[x.gen] != "generate" {
		t.Fatalf("/v1/models tasks: %v", tasks)
	}
	for _, c := range []struct {
		name, input string
		inputs      int
		exact       int64 // token-id inputs: the count the engine must report; 0 for strings
		base64      bool
	}{
		{"string", `"the quick brown fox jumps over the lazy dog"`, 1, 0, false},
		{"strings", `["the quick brown fox","jumps over","the lazy dog again and again"]`, 3, 0, false},
		{"token ids", `[101,2023,2003,1037,3231,102,7,7,7]`, 1, 9, false},
		{"token-id lists", `[[1,2,3],[4,5],[6,7,8,9,10,11,12]]`, 3, 12, false},
		{"base64", `["hello world","goodbye"]`, 2, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"model":%q,"input":%s,"dimensions":16,"user":"u-1"`, x.emb, c.input)
			if c.base64 {
				body += `,"encoding_format":"base64"`
			}
			var out embeddingsAnswer
			resp := x.do(t, "POST", "/v1/embeddings", key, body+"}", &out)
			id := resp.Header.Get("Sluice-Job-Id")
			if resp.StatusCode != 200 || out.Object != "list" || out.Model != x.emb || len(out.Data) != c.inputs || id == "" {
				t.Fatalf("%d %+v (job %q)", resp.StatusCode, out, id)
			}
			for i, d := range out.Data {
				var s string
				var f []float64
				if d.Object != "embedding" || d.Index != i || (c.base64 && (json.Unmarshal(d.Embedding, &s) != nil || len(s) == 0)) ||
					(!c.base64 && (json.Unmarshal(d.Embedding, &f) != nil || len(f) != 16)) {
					t.Fatalf("data[%d] = %+v %s", i, d, d.Embedding)
				}
			}
			if resp.Header.Get(submit.FallbackHeader) != "" {
				t.Fatalf("no fallback expected: %s", resp.Header.Get(submit.FallbackHeader))
			}
			u := out.Usage
			if u.PromptTokens <= 0 || u.TotalTokens != u.PromptTokens || (c.exact > 0 && u.PromptTokens != c.exact) {
				t.Fatalf("usage %+v, want %d exactly for token ids", u, c.exact)
			}
			s := x.settled(t, id)
			if s.LedgerModel != x.emb || s.Prompt != u.PromptTokens || s.Completion != 0 || s.Micro != -embPrice*u.PromptTokens ||
				s.UsageModel != x.emb || s.UsagePrompt != u.PromptTokens || s.Requested != "" {
				t.Fatalf("settled %+v for usage %+v (want %d micro-dollars)", s, u, -embPrice*u.PromptTokens)
			}
			t.Logf("%s: %d inputs, usage prompt_tokens=%d total_tokens=%d; ledger %d tokens, %d micro-dollars (%d a token)",
				c.name, c.inputs, u.PromptTokens, u.TotalTokens, s.Prompt, s.Micro, embPrice)
		})
	}
}

// TestEmbeddingsRefused: a request for the other kind of model is a 400 on
// "model"; ambiguous or unknown keys are 400s; and a batch is held in full,
// so a user whose credit pays for one short input is refused a batch of
// them, and nothing is charged for the refusal.
func TestEmbeddingsRefused(t *testing.T) {
	t.Parallel()
	x := setupEmbed(t)
	key, _ := x.fund(t, "rich", 1_000_000)
	for _, c := range []struct {
		name, path, body string
		status           int
		code, param      string
	}{
		{"chat to an embed model", "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, x.emb), 400, "invalid_value", "model"},
		{"completions to an embed model", "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"hi"}`, x.emb), 400, "invalid_value", "model"},
		{"embeddings to a generate model", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":"hi"}`, x.gen), 400, "invalid_value", "model"},
		{"case-variant input", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":"hi","Input":["a long batch","of inputs"]}`, x.emb), 400, "duplicate_key", "Input"},
		{"duplicate input", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":"hi","input":["a","b"]}`, x.emb), 400, "duplicate_key", "input"},
		{"upper-case input only", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"INPUT":"hi"}`, x.emb), 400, "unknown_parameter", "INPUT"},
		{"case-variant model", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"Model":%q,"input":"hi"}`, x.emb, x.gen), 400, "duplicate_key", "Model"},
		{"generation field", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":"hi","max_tokens":9}`, x.emb), 400, "unknown_parameter", "max_tokens"},
		{"bad encoding", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":"hi","encoding_format":"int8"}`, x.emb), 400, "invalid_value", "encoding_format"},
		{"empty input", "/v1/embeddings", fmt.Sprintf(`{"model":%q,"input":[]}`, x.emb), 400, "invalid_value", "input"},
		{"unknown model", "/v1/embeddings", `{"model":"nope","input":"hi"}`, 404, "model_not_found", "model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ae apiError
			r := x.do(t, "POST", c.path, key, c.body, &ae)
			if r.StatusCode != c.status || ae.Error.Type == "" || ae.Error.Code == nil || *ae.Error.Code != c.code ||
				ae.Error.Param == nil || *ae.Error.Param != c.param {
				t.Fatalf("%d %+v, want %d %s on %s", r.StatusCode, ae.Error, c.status, c.code, c.param)
			}
		})
	}

	// One 20-byte input holds 20 + 8 (per-input overhead) = 28 tokens = 56
	// micro-dollars; 300 buy it, but not 16 of them (448 tokens, 896).
	poor, poorID := x.fund(t, "poor", 300)
	input := strings.Repeat("abcd ", 4)
	batch := `[` + strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%q,", input), 16), ",") + `]`
	var ae apiError
	r := x.do(t, "POST", "/v1/embeddings", poor, fmt.Sprintf(`{"model":%q,"input":%s}`, x.emb, batch), &ae)
	if r.StatusCode != 429 || ae.Error.Code == nil || *ae.Error.Code != "insufficient_quota" {
		t.Fatalf("a batch past the credit: %d %+v", r.StatusCode, ae.Error)
	}
	var out embeddingsAnswer
	r = x.do(t, "POST", "/v1/embeddings", poor, fmt.Sprintf(`{"model":%q,"input":%q}`, x.emb, input), &out)
	if r.StatusCode != 200 || len(out.Data) != 1 {
		t.Fatalf("one input within the credit: %d %+v", r.StatusCode, out)
	}
	s := x.settled(t, r.Header.Get("Sluice-Job-Id"))
	var rows int
	var spent int64
	if err := x.db.Pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(credit_micros), 0) FROM credit_ledger
		WHERE user_id = $1 AND kind = 'usage'`, poorID).Scan(&rows, &spent); err != nil || rows != 1 || spent != s.Micro ||
		s.Micro != -embPrice*out.Usage.PromptTokens {
		t.Fatalf("poor user's ledger: %d usage rows, %d micro-dollars (%v); the one job: %+v", rows, spent, err, s)
	}
	t.Logf("batch of 16 refused (429 insufficient_quota) on 300 micro-dollars; one input ran: %d tokens, %d micro-dollars",
		out.Usage.PromptTokens, s.Micro)
}

// TestEmbeddingsFallback: a model with no healthy endpoint sends its
// requests to the first of its fallbacks the key may use, before admission:
// the fallback serves (the response names it), the header says so, the
// charge is at the fallback's price, the usage row keeps the model asked
// for, and the metric counts it. A key scoped to the model and its second
// fallback gets the second.
func TestEmbeddingsFallback(t *testing.T) {
	t.Parallel()
	x := setupEmbed(t)
	key, userID := x.fund(t, "rich", 1_000_000)
	scoped, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.db.CreateKey(context.Background(), postgres.NewKey{UserID: userID, Name: "scoped",
		Hash: apikey.Hash([]byte(x.cfg.Env.KeyPepper), scoped), Prefix: apikey.Display(scoped), Models: []string{x.dead, x.emb2}}); err != nil {
		t.Fatal(err)
	}
	x.healthy(t, x.emb)
	x.healthy(t, x.emb2)
	for _, c := range []struct {
		name, key, served string
		price             int64
	}{
		{"first fallback", key, x.emb, embPrice},
		{"first the key may use", scoped, x.emb2, emb2Price},
	} {
		var out embeddingsAnswer
		resp := x.do(t, "POST", "/v1/embeddings", c.key, fmt.Sprintf(`{"model":%q,"input":["fall back","to the other model"]}`, x.dead), &out)
		id := resp.Header.Get("Sluice-Job-Id")
		if resp.StatusCode != 200 || out.Model != c.served || len(out.Data) != 2 || out.Usage.PromptTokens <= 0 {
			t.Fatalf("%s: %d %+v", c.name, resp.StatusCode, out)
		}
		if h := resp.Header.Get(submit.FallbackHeader); h != x.dead+"->"+c.served {
			t.Fatalf("%s: %s: %q", c.name, submit.FallbackHeader, h)
		}
		s := x.settled(t, id)
		if s.LedgerModel != c.served || s.UsageModel != c.served || s.Requested != x.dead || s.Prompt != out.Usage.PromptTokens ||
			s.Micro != -c.price*out.Usage.PromptTokens {
			t.Fatalf("%s: settled %+v for usage %+v (want %d micro-dollars at %s's price)", c.name, s, out.Usage, -c.price*out.Usage.PromptTokens, c.served)
		}
		t.Logf("%s: %s, response model %q, usage prompt_tokens=%d; ledger %s %d tokens, %d micro-dollars (%d a token, not %s's %d)",
			c.name, resp.Header.Get(submit.FallbackHeader), out.Model, out.Usage.PromptTokens, s.LedgerModel, s.Prompt, s.Micro, c.price, x.dead, deadPrice)
	}
	mr, err := http.Get(x.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Body.Close()
	m, _ := io.ReadAll(mr.Body)
	for _, fb := range []string{x.emb, x.emb2} {
		want := fmt.Sprintf(`sluice_fallbacks_total{fallback=%q,model=%q} 1`, fb, x.dead)
		if !strings.Contains(string(m), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
		t.Log(want)
	}
}

// TestFallbackWhenQueueFull: a model whose queue is at jobs.max_queue (what
// would be 503 no_capacity) sends the next request to its fallback, priced
// there; its own running request is unaffected.
func TestFallbackWhenQueueFull(t *testing.T) {
	t.Parallel()
	base := testenv.Name("full")
	primary, fb := base, base+"-fb"
	x := &embedEnv{}
	// The simulator answers chat for its own model only: the fallback has
	// one of its own.
	fbSim, err := devstack.StartSim(context.Background(), testenv.Sim(t), fb, 512, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fbSim.Stop)
	// One job per stream (running ones count until they complete) and a
	// slow engine: a running job fills the primary's queue.
	x.start(t, base, func(sim string, _ int) string {
		return fmt.Sprintf(`
inference:
  models:
    - {name: %[1]s, max_batch_size: 1, max_model_len: 512, endpoints: [%[3]q], fallbacks: [%[2]s]}
    - {name: %[2]s, max_batch_size: 1, max_model_len: 512, endpoints: [%[4]q]}
pricing:
  %[1]s: {input_tokens: 0.000003, output_tokens: 0.000005}
  %[2]s: {input_tokens: 0.000002, output_tokens: 0.000009}
tiers:
  free: {included_credits: 0, rate_limit: unlimited}
jobs: {max_queue: 1}
server: {request_timeout: 30s}
worker: {usage_flush: 20ms}
dispatch: {health_interval: 200ms}
`, primary, fb, sim, fbSim.URL)
	}, "--inter-token-latency", "40ms")
	key, _ := x.fund(t, "rich", 1_000_000)
	x.healthy(t, primary)
	x.healthy(t, fb)
	long := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", x.url+"/v1/chat/completions", strings.NewReader(fmt.Sprintf(
			`{"model":%q,"messages":[{"role":"user","content":"a long story"}],"max_tokens":60,"ignore_eos":true}`, primary)))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			resp = &http.Response{StatusCode: 0}
		}
		long <- resp
	}()
	prio := x.cfg.TierPriority("free")
	waitFor(t, "the primary's queue to fill", func() bool {
		room, err := x.q.HasRoom(context.Background(), rkey.NewJobID(primary), primary, prio)
		return err == nil && !room
	})
	var out struct {
		Model string `json:"model"`
		Usage struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	resp := x.do(t, "POST", "/v1/chat/completions", key, fmt.Sprintf(
		`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, primary), &out)
	if resp.StatusCode != 200 || out.Model != fb || resp.Header.Get(submit.FallbackHeader) != primary+"->"+fb {
		t.Fatalf("%d %+v, %s: %q", resp.StatusCode, out, submit.FallbackHeader, resp.Header.Get(submit.FallbackHeader))
	}
	s := x.settled(t, resp.Header.Get("Sluice-Job-Id"))
	want := -(2*out.Usage.PromptTokens + 9*out.Usage.CompletionTokens)
	if s.LedgerModel != fb || s.Requested != primary || s.Prompt != out.Usage.PromptTokens || s.Completion != out.Usage.CompletionTokens || s.Micro != want {
		t.Fatalf("settled %+v for usage %+v, want %d micro-dollars at %s's prices", s, out.Usage, want, fb)
	}
	lr := <-long
	if lr.StatusCode != 200 || lr.Header.Get(submit.FallbackHeader) != "" {
		t.Fatalf("the primary's own request: %d, %s %q", lr.StatusCode, submit.FallbackHeader, lr.Header.Get(submit.FallbackHeader))
	}
	lr.Body.Close()
	t.Logf("queue full: %s served it (%s), usage %d+%d tokens, ledger %d micro-dollars at %s's prices (2 and 9 a token)",
		out.Model, resp.Header.Get(submit.FallbackHeader), out.Usage.PromptTokens, out.Usage.CompletionTokens, s.Micro, fb)
}
