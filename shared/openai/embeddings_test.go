package openai_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var embedCfg, _ = config.Parse([]byte("inference: {models: [{name: m, max_model_len: 100}, {name: e, task: embed, max_model_len: 100, allow: [echo]}]}"))

// TestParseEmbeddings: each input shape is bounded (strings by bytes, token
// ids exactly, a batch counted in full) with no completion part, and the
// engine gets the allowlisted fields re-encoded.
func TestParseEmbeddings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body           string
		bytes, prompts int64
	}{
		{`{"model":"e","input":"hello world"}`, 11, 1},
		{`{"model":"e","input":["hello","world!"],"encoding_format":"base64","dimensions":8,"user":"u1"}`, 11, 2},
		{`{"model":"e","input":[1,2,3,4,5]}`, 5, 1},
		{`{"model":"e","input":[[1,2,3],[4,5],[6]],"encoding_format":"float"}`, 6, 3},
	} {
		req, err := openai.Parse(sluice.EndpointEmbeddings, []byte(c.body), embedCfg, lim)
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		if req.PromptBytes != c.bytes || req.Prompts != c.prompts || !req.NoCompletion || req.MaxTokens != 0 || req.Stream ||
			req.Endpoint != sluice.EndpointEmbeddings || req.Model.Name != "e" {
			t.Fatalf("%s: req = %+v", c.body, req)
		}
		var in, up map[string]any
		json.Unmarshal([]byte(c.body), &in) //nolint:errcheck
		json.Unmarshal(req.Upstream, &up)   //nolint:errcheck
		if b1, _ := json.Marshal(in); string(b1) != func() string { b2, _ := json.Marshal(up); return string(b2) }() {
			t.Fatalf("upstream %s differs from %s", req.Upstream, c.body)
		}
	}
}

// TestParseEmbeddingsRefuses: bad input shapes and fields, wrong-task
// models, and keys the engine would read differently are 400s naming the
// field.
func TestParseEmbeddingsRefuses(t *testing.T) {
	t.Parallel()
	long := `"` + strings.Repeat("x", 405) + `"` // lim's floor is 4 bytes a token: ≥ 101 tokens
	ids := "[" + strings.Repeat("1,", 100) + "1]"
	many := "[" + strings.Repeat(`"a",`, openai.MaxEmbeddingInputs) + `"a"]`
	for _, c := range []struct {
		endpoint, body, param, code string
	}{
		{sluice.EndpointEmbeddings, `{"model":"m","input":"x"}`, "model", sluice.CodeInvalidValue},
		{sluice.EndpointChat, `{"model":"e","messages":[{"role":"user","content":"x"}]}`, "model", sluice.CodeInvalidValue},
		{sluice.EndpointCompletion, `{"model":"e","prompt":"x"}`, "model", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e"}`, "input", sluice.CodeMissingRequired},
		{sluice.EndpointEmbeddings, `{"model":"e","input":null}`, "input", sluice.CodeMissingRequired},
		{sluice.EndpointEmbeddings, `{"model":"e","input":""}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":[]}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":["a",""]}`, "input[1]", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":[[1],[]]}`, "input[1]", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":["a",1]}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":[1,"a"]}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":[-1]}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":[1.5]}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":{"a":1}}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":5}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":` + long + `}`, "input", sluice.CodeContextLengthExceeded},
		{sluice.EndpointEmbeddings, `{"model":"e","input":["a",` + long + `]}`, "input[1]", sluice.CodeContextLengthExceeded},
		{sluice.EndpointEmbeddings, `{"model":"e","input":` + ids + `}`, "input", sluice.CodeContextLengthExceeded},
		{sluice.EndpointEmbeddings, `{"model":"e","input":` + many + `}`, "input", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","encoding_format":"int8"}`, "encoding_format", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","dimensions":0}`, "dimensions", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","dimensions":2.5}`, "dimensions", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","dimensions":100000}`, "dimensions", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","user":5}`, "user", sluice.CodeInvalidValue},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","max_tokens":5}`, "max_tokens", sluice.CodeUnknownParameter},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","stream":true}`, "stream", sluice.CodeUnknownParameter},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","truncate_prompt_tokens":5}`, "truncate_prompt_tokens", sluice.CodeUnknownParameter},
		// A model's allow list is for the generate routes: nothing on it means anything here.
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","echo":true}`, "echo", sluice.CodeUnknownParameter},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","Input":"a much longer text"}`, "Input", sluice.CodeDuplicateKey},
		{sluice.EndpointEmbeddings, `{"model":"e","input":"x","input":["a","b"]}`, "input", sluice.CodeDuplicateKey},
		{sluice.EndpointEmbeddings, `{"model":"e","INPUT":"x"}`, "INPUT", sluice.CodeUnknownParameter},
	} {
		_, err := openai.Parse(c.endpoint, []byte(c.body), embedCfg, lim)
		e := sluice.AsError(err)
		if err == nil || e.Kind != sluice.KindInvalid || e.Param != c.param || e.Code != c.code {
			t.Errorf("%s %.120s: got %v (param %q code %q), want param %q code %q", c.endpoint, c.body, err, e.Param, e.Code, c.param, c.code)
		}
	}
}

// FuzzEmbeddings: whatever the body, the parser answers a 400 or 404,
// or a request whose bound covers every input with nothing generated, and
// whose upstream body parses to the same bound.
func FuzzEmbeddings(f *testing.F) {
	f.Add(`{"model":"e","input":"hello world"}`)
	f.Add(`{"model":"e","input":["a","bb"],"encoding_format":"base64","dimensions":8,"user":"u"}`)
	f.Add(`{"model":"e","input":[1,2,3]}`)
	f.Add(`{"model":"e","input":[[1,2],[3]]}`)
	f.Add(`{"model":"e","input":"x","Input":["a","b"]}`)
	f.Add(`{"model":"m","input":"x"}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := openai.Parse(sluice.EndpointEmbeddings, []byte(body), embedCfg, lim)
		if err != nil {
			if e := sluice.AsError(err); e.Kind != sluice.KindInvalid && e.Kind != sluice.KindNotFound {
				t.Fatalf("Parse(%q) gave a %v error: %v", body, e.Kind, err)
			}
			return
		}
		if !json.Valid(req.Upstream) || !req.NoCompletion || req.Prompts < 1 || req.Prompts > openai.MaxEmbeddingInputs ||
			req.PromptBytes < req.Prompts || req.Model.Task != config.TaskEmbed {
			t.Fatalf("Parse(%q) accepted a bad request: %+v", body, req)
		}
		up, err := openai.Parse(sluice.EndpointEmbeddings, req.Upstream, embedCfg, lim)
		if err != nil || up.PromptBytes != req.PromptBytes || up.Prompts != req.Prompts {
			t.Fatalf("Parse(%q): its upstream %q parses differently: %+v %v", body, req.Upstream, up, err)
		}
	})
}

// An alias of embed models reaches the engine as the version chosen for the
// user, the alias kept as the requested name.
func TestParseEmbeddingsAlias(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("inference: {models: [{name: e, task: embed}]}\naliases: {a: {versions: [{model: e, weight: 1}]}}"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := openai.Parse(sluice.EndpointEmbeddings, []byte(`{"model":"a","input":["x","y"]}`), c.ForUser("u"), lim)
	if err != nil {
		t.Fatal(err)
	}
	var up map[string]any
	json.Unmarshal(req.Upstream, &up) //nolint:errcheck
	if req.Model.Name != "e" || req.Requested != "a" || up["model"] != "e" || req.Prompts != 2 {
		t.Fatalf("req %+v, upstream %s", req, req.Upstream)
	}
}
