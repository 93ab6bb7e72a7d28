package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// hostile is a stack whose chat model's engine sits behind a recording
// proxy that reads each request as vLLM does (enginetest).
type hostile struct {
	*stack
	proxy *enginetest.Proxy
	cfg   *config.Config
	model *config.Model
	key   string
}

// Every token is priced: 1 µ$ in, 2 µ$ out, all of it postpaid, so a job's
// charge is exactly its tokens priced.
const hostileYAML = `
pricing:
  %CHAT%:
    input_tokens: 0.000001
    output_tokens: 0.000002
tiers:
  free:
    rate_limit: 100000
    included_credits: 0
    overage: postpaid
    overage_cap: 100
`

func startHostile(t *testing.T, simArgs ...string) *hostile {
	t.Helper()
	name := testenv.Name("hostile")
	ctx, cancel := context.WithCancel(context.Background())
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), name, 1024, 8, "", simArgs...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Stop(); cancel() })
	proxy := enginetest.NewProxy(t, sim.URL, 4)
	s := startStackEnv(t, map[string]string{"SLUICE_TEST_CHAT": name, "SLUICE_TEST_CHAT_ENDPOINT": proxy.URL}, hostileYAML)
	raw, err := os.ReadFile(s.env["SLUICE_CONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := cfg.Model(name)
	return &hostile{stack: s, proxy: proxy, cfg: cfg, model: m, key: s.newKey(t, name+"@example.com")}
}

// post sends body to path with the user's key; it reads a stream to its end
// (or, with cut > 0, drops it after cut chunks).
func (h *hostile) post(t *testing.T, path, body string, cut int) (int, sluice.ErrorBody, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error sluice.ErrorBody }
	if resp.StatusCode != http.StatusOK {
		json.NewDecoder(resp.Body).Decode(&e) //nolint:errcheck
		return resp.StatusCode, e.Error, ""
	}
	if cut > 0 {
		sc := bufio.NewScanner(resp.Body)
		for n := 0; n < cut && sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "data: ") {
				n++
			}
		}
		cancel()
	} else {
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
	}
	return resp.StatusCode, e.Error, resp.Header.Get("Sluice-Job-Id")
}

// charge waits for a job's usage ledger row: tokens and micro-dollars.
func (h *hostile) charge(t *testing.T, jobID string) (prompt, completion, micros int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		err := conn.QueryRow(ctx, `SELECT prompt_tokens, completion_tokens, overage_micros - credit_micros FROM credit_ledger
			WHERE job_id = $1 AND kind = 'usage'`, jobID).Scan(&prompt, &completion, &micros)
		if err == nil {
			return prompt, completion, micros
		}
	}
	t.Fatalf("job %s: no usage ledger row", jobID)
	return 0, 0, 0
}

// engineSaw returns the one request carrying marker that reached the
// engine, after its answer (and usage) came back.
func (h *hostile) engineSaw(t *testing.T, marker string, wantUsage bool) *enginetest.Exchange {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// The worker's own /tokenize calls (how a cut stream's prompt is
		// priced) carry the marker too, and under load one may land before
		// the first look: count only generation requests.
		exs := slices.DeleteFunc(h.proxy.Find(marker), func(ex *enginetest.Exchange) bool { return ex.Endpoint == "/tokenize" })
		if len(exs) == 1 && (!wantUsage || h.proxy.UsageOf(exs[0]) != nil) {
			return exs[0]
		}
		if len(exs) > 1 || time.Now().After(deadline) {
			t.Fatalf("marker %s: %d engine requests (usage wanted: %v)", marker, len(exs), wantUsage)
		}
	}
}

// admitted checks a request that was admitted: the hold covers what the
// engine parses and renders, and the charge is the engine's usage priced.
func (h *hostile) admitted(t *testing.T, endpoint, body, marker, jobID string) {
	t.Helper()
	ex := h.engineSaw(t, marker, true)
	if ex.RenderErr != nil {
		t.Fatalf("the engine could not parse what it got: %v\n%s", ex.RenderErr, ex.Raw)
	}
	hold, ok := holdFor(t, h.cfg, endpoint, body)
	if !ok {
		t.Fatalf("admitted, but admission's parse refuses it: %s", body)
	}
	u := h.proxy.UsageOf(ex)
	if err := enginetest.Covers(hold, ex.Rendered, h.model, u); err != nil {
		t.Fatalf("%v\nclient sent: %.300s\nengine got: %.300s", err, body, ex.Raw)
	}
	p, c, micros := h.charge(t, jobID)
	if p != u.Prompt || c != u.Completion || micros != u.Prompt*1+u.Completion*2 {
		t.Fatalf("charged %d+%d tokens, %d µ$; the engine counted %d+%d (%d µ$)", p, c, micros, u.Prompt, u.Completion, u.Prompt+2*u.Completion)
	}
}

// refused checks a 400 with code, param, and that nothing reached the engine.
func (h *hostile) refused(t *testing.T, st int, e sluice.ErrorBody, code, param, marker string) {
	t.Helper()
	if st != http.StatusBadRequest || e.Code != code || e.Param != param || e.Type != "invalid_request_error" {
		t.Errorf("got %d %+v, want 400 %s naming %q", st, e, code, param)
	}
	if exs := h.proxy.Find(marker); len(exs) != 0 {
		t.Errorf("a refused request reached the engine: %s", exs[0].Raw)
	}
}

// checkHostile: a hostile body is either refused with the given 400 or, if
// admitted, held for everything the engine runs (which fails on code that
// reads it differently from the engine).
func (h *hostile) checkHostile(t *testing.T, endpoint, body, marker, code, param string) {
	t.Helper()
	st, e, job := h.post(t, endpoint, body, 0)
	if st == http.StatusOK {
		h.admitted(t, endpoint, body, marker, job)
		t.Errorf("admitted; want 400 %s naming %q", code, param)
		return
	}
	h.refused(t, st, e, code, param, marker)
}

// TestHostileCaseVariantKeys (issue 13, finding 1): keys that differ only
// by case, or appear twice, at any depth, are refused: vLLM reads the exact
// lower-case ones (a 3 KB prompt, n 4, 300 tokens each) where encoding/json
// took the last variant ("hi", 1 token, 1 choice).
func TestHostileCaseVariantKeys(t *testing.T) {
	t.Parallel()
	h := startHostile(t)
	big := strings.Repeat("tell me more ", 250)
	for i, c := range []struct{ body, param string }{
		{`{"model":%q,"messages":[{"role":"user","content":"%s %s"}],"max_tokens":300,"n":4,"ignore_eos":true,
			"MESSAGES":[{"role":"user","content":"hi"}],"MAX_TOKENS":1,"N":1}`, "MESSAGES"},
		{`{"model":%q,"messages":[{"role":"user","content":"%s %s","CONTENT":"hi"}],"max_tokens":300,"ignore_eos":true}`, "messages[0].CONTENT"},
		{`{"model":%q,"messages":[{"role":"user","content":"%s %s"}],"max_tokens":300,"max_tokens":1,"ignore_eos":true}`, "max_tokens"},
	} {
		marker := fmt.Sprintf("case-variant-%d-%s", i, h.model.Name)
		body := fmt.Sprintf(c.body, h.model.Name, marker, big)
		t.Run(c.param, func(t *testing.T) {
			h.checkHostile(t, sluice.EndpointChat, body, marker, sluice.CodeDuplicateKey, c.param)
		})
	}
	// The same trick on model: a key's model allowlist must see the model
	// the engine serves.
	marker := "case-variant-model-" + h.model.Name
	body := fmt.Sprintf(`{"model":"some-other-model","MODEL":%q,"messages":[{"role":"user","content":%q}]}`, h.model.Name, marker)
	h.checkHostile(t, sluice.EndpointChat, body, marker, sluice.CodeDuplicateKey, "MODEL")
	// Fields vLLM does not read (or Sluice cannot bound) are refused by name.
	marker = "unknown-field-" + h.model.Name
	body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"Max_Tokens":1}`, h.model.Name, marker)
	h.checkHostile(t, sluice.EndpointChat, body, marker, sluice.CodeUnknownParameter, "Max_Tokens")
	body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"chat_template":"{%% for i in range(99999) %%}x{%% endfor %%}"}`, h.model.Name, marker)
	h.checkHostile(t, sluice.EndpointChat, body, marker, sluice.CodeUnsupportedParameter, "chat_template")
}

// TestHostileBatchedPrompts (issue 13, finding 2): a completions batch is
// held as prompts × n × max_tokens, and charged what the engine counted.
func TestHostileBatchedPrompts(t *testing.T) {
	t.Parallel()
	h := startHostile(t)
	marker := "batch-" + h.model.Name
	prompts := make([]string, 12)
	for i := range prompts {
		prompts[i] = fmt.Sprintf("%s prompt %d", marker, i)
	}
	list, _ := json.Marshal(prompts)
	body := fmt.Sprintf(`{"model":%q,"prompt":%s,"max_tokens":40,"n":2,"ignore_eos":true}`, h.model.Name, list)
	st, e, job := h.post(t, sluice.EndpointCompletion, body, 0)
	if st != http.StatusOK {
		t.Fatalf("batch refused: %d %+v", st, e)
	}
	h.admitted(t, sluice.EndpointCompletion, body, marker, job)
	// Past the batch limit: a clear 400.
	many, _ := json.Marshal(make([]string, 129))
	body = fmt.Sprintf(`{"model":%q,"prompt":%s,"max_tokens":4}`, h.model.Name, strings.ReplaceAll(string(many), `""`, `"x `+marker+`"`))
	st, e, _ = h.post(t, sluice.EndpointCompletion, body, 0)
	if st != http.StatusBadRequest || e.Param != "prompt" {
		t.Fatalf("a batch of 129: %d %+v", st, e)
	}
}

// TestHostilePromptMaterial (issue 13, finding 3): tools, tool-call
// arguments and response-format schemas are prompt material the template
// renders; all are in the hold, and the charge is what the engine counted.
// An image part for a model without an image bound is a clear 400.
func TestHostilePromptMaterial(t *testing.T) {
	t.Parallel()
	h := startHostile(t)
	marker := "material-" + h.model.Name
	desc := strings.Repeat("a very detailed description ", 120)
	schema := fmt.Sprintf(`{"type":"object","properties":{"q":{"type":"string","description":%q},"r":{"type":"array","items":{"type":"integer"}}}}`, desc)
	args, _ := json.Marshal(fmt.Sprintf(`{"q":%q,"r":[1,2,3]}`, desc))
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":%s}}]},
		{"role":"tool","tool_call_id":"c1","content":"ok"}],
		"tools":[{"type":"function","function":{"name":"lookup","description":%q,"parameters":%s}}],
		"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":%s}},"max_tokens":5}`,
		h.model.Name, marker, args, desc, schema, schema)
	st, e, job := h.post(t, sluice.EndpointChat, body, 0)
	if st != http.StatusOK {
		t.Fatalf("tool request refused: %d %+v", st, e)
	}
	h.admitted(t, sluice.EndpointChat, body, marker, job)

	marker = "image-" + h.model.Name
	body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":[{"type":"text","text":%q},
		{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],"max_tokens":5}`, h.model.Name, marker)
	h.checkHostile(t, sluice.EndpointChat, body, marker, sluice.CodeUnsupportedParameter, "messages[0].content[1]")
}

// TestHostileMoneyProperty (issue 13): random request shapes (messages with
// tools and tool calls, batched prompts, n, max_tokens, streams, cut
// streams) through the real stack and the recording proxy: per job, the
// hold covers what the engine ran, and the ledger charge is the engine's
// usage priced. A fixed seed keeps it reproducible; the failing shape is
// printed.
func TestHostileMoneyProperty(t *testing.T) {
	t.Parallel()
	h := startHostile(t, "--inter-token-latency", "2ms")
	rng := rand.New(rand.NewPCG(13, 7))
	words := func(n int) string {
		w := make([]string, n)
		for i := range w {
			w[i] = []string{"alpha", "béta", "γάμμα", "delta", "\"quoted\"", "tab\there", "line\nbreak", "{json}"}[rng.IntN(8)]
		}
		return strings.Join(w, " ")
	}
	kinds := map[string]int{}
	for i := range 20 {
		marker := fmt.Sprintf("prop-%d-%s", i, h.model.Name)
		maxTokens := 1 + rng.IntN(30)
		n := 1 + rng.IntN(3)
		endpoint, body, cut := sluice.EndpointChat, "", 0
		switch rng.IntN(3) {
		case 0: // completions: a string or a batch of strings
			endpoint = sluice.EndpointCompletion
			prompts := make([]string, 1+rng.IntN(5))
			for j := range prompts {
				prompts[j] = marker + " " + words(1+rng.IntN(40))
			}
			p, _ := json.Marshal(prompts)
			if len(prompts) == 1 && rng.IntN(2) == 0 {
				p, _ = json.Marshal(prompts[0])
			}
			body = fmt.Sprintf(`{"model":%q,"prompt":%s,"max_tokens":%d,"n":%d,"ignore_eos":true}`, h.model.Name, p, maxTokens, n)
			kinds[fmt.Sprintf("completions×%d", len(prompts))]++
		default: // chat, with tools and a tool-call turn half the time
			msgs := []map[string]any{{"role": "system", "content": words(rng.IntN(20))}, {"role": "user", "content": marker + " " + words(1+rng.IntN(60))}}
			extra := ""
			if rng.IntN(2) == 0 {
				args, _ := json.Marshal(map[string]any{"q": words(rng.IntN(30)), "k": rng.IntN(1000), "f": 1e15})
				msgs = append(msgs, map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": "c", "type": "function",
					"function": map[string]any{"name": "f", "arguments": string(args)}}}}, map[string]any{"role": "tool", "tool_call_id": "c", "content": words(rng.IntN(20))})
				tool, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]any{"name": "f", "description": words(rng.IntN(40)),
					"parameters": map[string]any{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string", "enum": []string{words(3), words(2)}}}}}})
				extra = fmt.Sprintf(`,"tools":[%s]`, tool)
				kinds["tools"]++
			}
			if rng.IntN(2) == 0 {
				extra += `,"stream":true`
				if rng.IntN(2) == 0 {
					cut = 1 + rng.IntN(3)
					maxTokens += 20
					kinds["cut stream"]++
				} else {
					kinds["stream"]++
				}
			}
			m, _ := json.Marshal(msgs)
			body = fmt.Sprintf(`{"model":%q,"messages":%s,"max_tokens":%d,"n":%d,"ignore_eos":true%s}`, h.model.Name, m, maxTokens, n, extra)
		}
		st, e, job := h.post(t, endpoint, body, cut)
		if st != http.StatusOK {
			t.Fatalf("shape %d refused: %d %+v\n%s", i, st, e, body)
		}
		if cut > 0 {
			// A cut stream has no usage chunk: the hold must still cover
			// what the engine was asked to run, and the charge its ledger
			// tokens priced (the prompt of a cut stream is issue 13's
			// finding 4, the worker's side).
			ex := h.engineSaw(t, marker, false)
			hold, _ := holdFor(t, h.cfg, endpoint, body)
			if err := enginetest.Covers(hold, ex.Rendered, h.model, nil); err != nil {
				t.Fatalf("shape %d (cut stream): %v\n%s", i, err, body)
			}
			if p, c, micros := h.charge(t, job); micros != p+2*c || c < int64(cut)-1 {
				t.Fatalf("shape %d (cut stream): charged %d µ$ for %d+%d tokens", i, micros, p, c)
			}
			continue
		}
		t.Run(fmt.Sprintf("shape%d", i), func(t *testing.T) { h.admitted(t, endpoint, body, marker, job) })
	}
	t.Logf("shapes: %v", kinds)
	if kinds["tools"] == 0 || kinds["cut stream"] == 0 || kinds["stream"] == 0 || len(kinds) < 5 {
		t.Fatalf("the seed no longer covers every shape: %v", kinds)
	}
}
