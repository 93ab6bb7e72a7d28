package openai_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestDecodeRefusesAmbiguousKeys: a key twice, or two keys equal but for
// case, at any depth, is a 400 duplicate_key naming the key's path.
func TestDecodeRefusesAmbiguousKeys(t *testing.T) {
	t.Parallel()
	for body, param := range map[string]string{
		`{"n":1,"n":2}`:                      "n",
		`{"messages":[],"MESSAGES":[]}`:      "MESSAGES",
		`{"max_tokens":1,"MAX_TOKENS":9}`:    "MAX_TOKENS",
		`{"a":[{"x":{"k":1,"K":2}}]}`:        "a[0].x.K",
		`{"k":1,"\u212a":2}`:                 "\u212a", // the Kelvin sign folds to k, as encoding/json matches it
		`{"model":"m","\u006dodel":"other"}`: "model",
	} {
		_, err := openai.Decode([]byte(body))
		if e := sluice.AsError(err); err == nil || e.Code != sluice.CodeDuplicateKey || e.Param != param {
			t.Errorf("%s: got %v (param %q), want duplicate_key at %q", body, err, e.Param, param)
		}
	}
	v, err := openai.Decode([]byte(`{"a":[1,{"b":null}],"c":"\u00e9","d":1e400}`))
	if err != nil || string(v.Bytes()) != `{"a":[1,{"b":null}],"c":"é","d":1e400}` {
		t.Fatalf("Decode/Encode: %s %v", v.Bytes(), err)
	}
	for _, bad := range []string{`{"a":1}x`, `{"a":}`, "{\"a\":\"\xff\"}", strings.Repeat("[", 200) + strings.Repeat("]", 200)} {
		if _, err := openai.Decode([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// TestParseAllowlist: only allowlisted fields reach the engine; unknown
// ones get 400 unknown_parameter naming them, unboundable ones 400
// unsupported_parameter unless the model allows them.
func TestParseAllowlist(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("inference: {models: [{name: m, max_model_len: 1000}, {name: open, max_model_len: 1000, allow: [chat_template_kwargs, echo], media: {image: 700}}]}"))
	if err != nil {
		t.Fatal(err)
	}
	chat := func(model, extra string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	for _, tc := range []struct{ ep, body, param, code string }{
		{sluice.EndpointChat, chat("m", `,"Max_Tokens":5`), "Max_Tokens", sluice.CodeUnknownParameter},
		{sluice.EndpointChat, chat("m", `,"logits_processors":["x"]`), "logits_processors", sluice.CodeUnknownParameter},
		{sluice.EndpointChat, chat("m", `,"chat_template_kwargs":{"a":1}`), "chat_template_kwargs", sluice.CodeUnsupportedParameter},
		{sluice.EndpointChat, chat("m", `,"chat_template":"{{x}}"`), "chat_template", sluice.CodeUnsupportedParameter},
		{sluice.EndpointCompletion, `{"model":"m","prompt":"x","echo":true}`, "echo", sluice.CodeUnsupportedParameter},
		{sluice.EndpointCompletion, `{"model":"m","prompt":"x","use_beam_search":true}`, "use_beam_search", sluice.CodeUnsupportedParameter},
		{sluice.EndpointChat, chat("m", `,"prompt_logprobs":50`), "prompt_logprobs", sluice.CodeInvalidValue},
		{sluice.EndpointChat, chat("m", `,"stream":true,"stream_options":{"Include_Usage":false}`), "stream_options.Include_Usage", sluice.CodeUnknownParameter},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":"x","weight":2}]}`, "messages[0].weight", sluice.CodeUnknownParameter},
		{sluice.EndpointChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://x/a.png"}}]}]}`, "messages[0].content[0]", sluice.CodeUnsupportedParameter},
		{sluice.EndpointChat, `{"model":"open","messages":[{"role":"user","content":[{"type":"video_url","video_url":{"url":"http://x/a.mp4"}}]}]}`, "messages[0].content[0]", sluice.CodeUnsupportedParameter},
		{sluice.EndpointCompletion, `{"model":"m","prompt":"x","best_of":2,"n":3}`, "best_of", sluice.CodeInvalidValue},
		{sluice.EndpointCompletion, `{"model":"m","prompt":[[1,2],"x"]}`, "prompt", sluice.CodeInvalidValue},
		{sluice.EndpointCompletion, `{"model":"m","prompt":[` + strings.Repeat(`"a",`, 200) + `"a"]}`, "prompt", sluice.CodeInvalidValue},
		{sluice.EndpointChat, `{"model":"m","MODEL":"other","messages":[{"role":"user","content":"x"}]}`, "MODEL", sluice.CodeDuplicateKey},
	} {
		_, err := openai.Parse(tc.ep, []byte(tc.body), c, lim)
		if e := sluice.AsError(err); err == nil || e.Param != tc.param || e.Code != tc.code || e.Kind != sluice.KindInvalid {
			t.Errorf("%s: got %v (param %q code %q), want %q %q", tc.body, err, e.Param, e.Code, tc.param, tc.code)
		}
	}
	// Allowed by the model: passes, its bytes in the bound; an image part
	// costs the model's image bound.
	req, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"open","messages":[{"role":"user","content":[{"type":"text","text":"hi"},
		{"type":"image_url","image_url":{"url":"http://x/a.png"}}]}],"chat_template_kwargs":{"enable_thinking":false}}`), c, lim)
	if err != nil || req.ExtraTokens != 128+700 || req.PromptBytes < int64(len(`{"enable_thinking":false}`)) {
		t.Fatalf("allowed fields: %+v %v", req, err)
	}
	// The upstream body is the re-encoding, not the raw bytes.
	req, err = openai.Parse(sluice.EndpointChat, []byte(`{ "model" : "m", "messages":[{"role":"user","content":"hi"}], "top_k": 3, "stream":true, "stream_options":{"include_usage":false}}`), c, lim)
	if err != nil || string(req.Upstream) != `{"model":"m","messages":[{"role":"user","content":"hi"}],"top_k":3,"stream":true,"stream_options":{"include_usage":true}}` {
		t.Fatalf("upstream: %s %v", req.Upstream, err)
	}
}

// TestParseBounds: everything the template renders is in the bound, and a
// batch multiplies the completion.
func TestParseBounds(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("inference: {models: [{name: m, max_model_len: 100000}]}"))
	if err != nil {
		t.Fatal(err)
	}
	schema := `{"type":"object","properties":{"q":{"type":"string","description":"` + strings.Repeat("d", 3000) + `"}}}`
	tools := `[{"type":"function","function":{"name":"f","parameters":` + schema + `}}]`
	req, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":\"`+strings.Repeat("a", 2000)+`\"}"}}]},
		{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":`+tools+`,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":`+schema+`}}}`), c, lim)
	if err != nil {
		t.Fatal(err)
	}
	// tools 3000+, arguments twice (as a string and parsed) 4000+, the schema 3000+.
	if req.PromptBytes < 10000 || req.ExtraTokens != 128+512 || req.Messages != 3 {
		t.Fatalf("tool material not in the bound: %+v", req)
	}
	req, err = openai.Parse(sluice.EndpointCompletion, []byte(`{"model":"m","prompt":["a","bb","ccc"],"max_tokens":7,"n":2,"best_of":4}`), c, lim)
	if err != nil || req.Prompts != 3 || req.Choices != 4 || req.PromptBytes != 6 || req.MaxTokens != 7 {
		t.Fatalf("batch: %+v %v", req, err)
	}
	req, err = openai.Parse(sluice.EndpointCompletion, []byte(`{"model":"m","prompt":[[1,2,3],[4]]}`), c, lim)
	if err != nil || req.Prompts != 2 || req.PromptBytes != 4 || req.Room != 100000 {
		t.Fatalf("token batch: %+v %v", req, err)
	}
}

// FuzzDecode: Decode never panics, and what it accepts re-encodes to JSON
// that decodes to the same value, with no key that encoding/json could
// match to another.
func FuzzDecode(f *testing.F) {
	f.Add(`{"a":1,"A":2}`)
	f.Add(`{"a":[{"b":"\u00e9","c":null,"d":true}],"e":-1.5e3}`)
	f.Add(`[1,2,{"k":"\u212a"}]`)
	f.Fuzz(func(t *testing.T, body string) {
		v, err := openai.Decode([]byte(body))
		if err != nil {
			if e := sluice.AsError(err); e.Kind != sluice.KindInvalid {
				t.Fatalf("Decode(%q): %v error %v", body, e.Kind, err)
			}
			return
		}
		out := v.Bytes()
		if !json.Valid(out) {
			t.Fatalf("Decode(%q) re-encodes to invalid JSON %q", body, out)
		}
		v2, err := openai.Decode(out)
		if err != nil || !bytes.Equal(v2.Bytes(), out) {
			t.Fatalf("re-encoding of %q is not stable: %q %v", body, out, err)
		}
	})
}
