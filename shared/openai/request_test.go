package openai_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var (
	cfg, _ = config.Parse([]byte("inference: {models: [{name: m, max_model_len: 100}]}"))
	lim    = openai.Limits{MaxMessages: 4, BytesPerTokenFloor: 4}
)

func TestParseChat(t *testing.T) {
	t.Parallel()
	req, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}],
		"max_tokens":5,"stream":true,"stream_options":{"include_usage":false},"top_k":3}`), cfg, lim)
	if err != nil {
		t.Fatal(err)
	}
	if !req.Stream || req.IncludeUsage || req.MaxTokens != 5 || req.PromptBytes != int64(len("hello")+len("user")) ||
		req.ExtraTokens != 128 || req.Prompts != 1 {
		t.Fatalf("req = %+v", req)
	}
	var up map[string]any
	json.Unmarshal(req.Upstream, &up) //nolint:errcheck
	if up["top_k"] != 3.0 || up["stream_options"].(map[string]any)["include_usage"] != true {
		t.Fatalf("upstream body must keep allowlisted fields and always ask for usage: %s", req.Upstream)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		endpoint, body, param, code string
		kind                        sluice.Kind
	}{
		{sluice.EndpointChat, `{"messages":[{"role":"user","content":"x"}]}`, "model", sluice.CodeMissingRequired, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, "model", sluice.CodeModelNotFound, sluice.KindNotFound},
		{sluice.EndpointChat, `{"model":"m"}`, "messages", sluice.CodeMissingRequired, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[]}`, "messages", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":"hi"}`, "messages", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"content":"x"}]}`, "messages[0].role", sluice.CodeMissingRequired, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user"}]}`, "messages[0].content", sluice.CodeMissingRequired, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"},{"role":"user","content":"x"}]}`, "messages", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-4}`, "max_tokens", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":100}`, "max_tokens", sluice.CodeContextLengthExceeded, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":"5"}`, "max_completion_tokens", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3}`, "temperature", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}`, "n", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, "stream_options", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("x", 405) + `"}]}`, "messages", sluice.CodeContextLengthExceeded, sluice.KindInvalid},
		{sluice.EndpointCompletion, `{"model":"m"}`, "prompt", sluice.CodeMissingRequired, sluice.KindInvalid},
		{sluice.EndpointCompletion, `{"model":"m","prompt":""}`, "prompt", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointCompletion, `{"model":"m","prompt":[]}`, "prompt", sluice.CodeInvalidValue, sluice.KindInvalid},
		{sluice.EndpointCompletion, `{"model":"m","prompt":{"a":1}}`, "prompt", sluice.CodeInvalidValue, sluice.KindInvalid},
	} {
		_, err := openai.Parse(c.endpoint, []byte(c.body), cfg, lim)
		e := sluice.AsError(err)
		if err == nil || e.Param != c.param || e.Code != c.code || e.Kind != c.kind {
			t.Errorf("%s: got %v (param %q code %q), want param %q code %q", c.body, err, e.Param, e.Code, c.param, c.code)
		}
	}
	// Token-id prompts are counted exactly.
	req, err := openai.Parse(sluice.EndpointCompletion, []byte(`{"model":"m","prompt":[1,2,3]}`), cfg, lim)
	if err != nil || req.PromptBytes != 3 {
		t.Fatalf("token prompt: %+v %v", req, err)
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]int{
		`{"a":1}`:               0,
		`{"a":`:                 400,
		`[1,2]`:                 400,
		``:                      400,
		"{\"a\":\"\xff\"}":      400,
		strings.Repeat(" ", 20): 400,
		`{"a":"` + strings.Repeat("x", 2000) + `"}`: 413,
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		_, err := openai.ReadBody(r, 1024)
		got := 0
		if err != nil {
			got = openai.Status(err)
		}
		if got != want {
			t.Errorf("ReadBody(%.30q) status %d, want %d", body, got, want)
		}
	}
}

func TestUpstreamError(t *testing.T) {
	t.Parallel()
	b := openai.UpstreamError(400, []byte(`{"error":{"message":"This model's maximum context length is 256 tokens.","type":"BadRequestError","param":null,"code":400}}`))
	if _, body := openai.Body(b); b.Code != sluice.CodeContextLengthExceeded || body.Type != "invalid_request_error" || body.Param != "messages" {
		t.Fatalf("context length: %+v", b)
	}
	flat := openai.UpstreamError(404, []byte(`{"object":"error","message":"The model x does not exist.","type":"NotFoundError","code":404}`))
	if flat.Code != sluice.CodeModelNotFound || !strings.Contains(flat.Message, "does not exist") {
		t.Fatalf("flat shape: %+v", flat)
	}
	if st, g := openai.Body(openai.UpstreamError(502, []byte("<html>"))); st != 502 || g.Type != "server_error" || g.Message == "" {
		t.Fatalf("garbage: %+v", g)
	}
}

func TestErrorShape(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	openai.WriteError(w, httptest.NewRequest("GET", "/", nil), nil, sluice.Internal(errString("secret db password in cause")))
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") {
		t.Fatalf("internal error leaked: %d %s", w.Code, w.Body)
	}
	var out map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := out["error"][k]; !ok {
			t.Errorf("error object lacks %q: %s", k, w.Body)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func FuzzParse(f *testing.F) {
	f.Add(`{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":5}`)
	f.Add(`{"model":"m","prompt":[[1,2],[3]]}`)
	f.Add(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"stream":true}`)
	f.Add(`{"model":"m","messages":[{"role":"user","content":"x"}],"MESSAGES":[],"n":2,"N":1}`)
	f.Add(`{"model":"m","prompt":["a","b"],"max_tokens":3,"n":2,"best_of":3}`)
	f.Add(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}],"tools":[{"type":"function"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range []string{sluice.EndpointChat, sluice.EndpointCompletion} {
			req, err := openai.Parse(ep, []byte(body), cfg, lim)
			if err != nil {
				if e := sluice.AsError(err); e.Kind != sluice.KindInvalid && e.Kind != sluice.KindNotFound {
					t.Fatalf("Parse(%q) gave a %v error: %v", body, e.Kind, err)
				}
				continue
			}
			if !json.Valid(req.Upstream) || req.MaxTokens < 0 || req.MaxTokens >= 100 || req.Prompts < 1 || req.Choices < 1 {
				t.Fatalf("Parse(%q) accepted a bad request: %+v", body, req)
			}
			// The engine's body parses strictly too, and parses to itself:
			// what was admitted is what runs.
			up, err := openai.Parse(ep, req.Upstream, cfg, lim)
			if err != nil || up.PromptBytes != req.PromptBytes || up.Prompts != req.Prompts || up.Choices != req.Choices ||
				up.MaxTokens != req.MaxTokens {
				t.Fatalf("Parse(%q): its upstream %q parses differently: %+v %v", body, req.Upstream, up, err)
			}
		}
	})
}

// An alias reaches the engine as the version chosen for the user.
func TestParseAlias(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("inference: {models: [{name: m, max_model_len: 100}]}\naliases: {a: {versions: [{model: m, weight: 1}]}}"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"a","messages":[{"role":"user","content":"hi"}]}`), c.ForUser("u"), lim)
	if err != nil {
		t.Fatal(err)
	}
	var up map[string]any
	json.Unmarshal(req.Upstream, &up) //nolint:errcheck
	if req.Model.Name != "m" || req.Requested != "a" || up["model"] != "m" {
		t.Fatalf("req %+v, upstream %s", req, req.Upstream)
	}
}
