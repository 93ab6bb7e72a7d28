package openai_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// history serves one stored response, "resp_1": a user turn and the
// assistant's answer.
func history(id string) ([]json.RawMessage, error) {
	if id != "resp_1" {
		return nil, sluice.ErrNotFound
	}
	return []json.RawMessage{
		json.RawMessage(`{"type":"message","role":"user","content":"first question"}`),
		json.RawMessage(`{"type":"message","role":"assistant","status":"completed","content":[{"type":"output_text","text":"first answer"}]}`),
	}, nil
}

// TestParseResponses: the hold covers instructions, every input item of the
// expanded history and the tools; store, previous_response_id and metadata
// stay with Sluice; the upstream input is the history then the new input.
func TestParseResponses(t *testing.T) {
	t.Parallel()
	rr, err := openai.ParseResponses([]byte(`{"model":"m","input":"next","instructions":"be brief","max_output_tokens":7,
		"previous_response_id":"resp_1","store":false,"metadata":{"a":"b"},"stream":true,"temperature":0}`), cfg, openai.Limits{MaxMessages: 8, BytesPerTokenFloor: 4}, history)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len("next") + len("user") + len("be brief") + len("system") + len("first question") + len("user") + len("first answer") + len("assistant"))
	if rr.Store || rr.PreviousID != "resp_1" || string(rr.Metadata) != `{"a":"b"}` || !rr.Stream || rr.MaxTokens != 7 ||
		rr.PromptBytes != want || rr.Messages != 4 || rr.Deterministic {
		t.Fatalf("rr = %+v (want %d prompt bytes)", rr, want)
	}
	var up map[string]json.RawMessage
	if err := json.Unmarshal(rr.Upstream, &up); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"store", "previous_response_id", "metadata"} {
		if _, ok := up[k]; ok {
			t.Fatalf("%s reached the engine's body: %s", k, rr.Upstream)
		}
	}
	var in []map[string]any
	if err := json.Unmarshal(up["input"], &in); err != nil || len(in) != 3 || in[0]["content"] != "first question" || in[2]["content"] != "next" {
		t.Fatalf("upstream input %s: %v", up["input"], err)
	}
	if string(rr.Input) != string(up["input"]) {
		t.Fatalf("kept input %s, sent %s", rr.Input, up["input"])
	}
	// Without history the client's input goes as sent.
	rr, err = openai.ParseResponses([]byte(`{"model":"m","input":"hi"}`), cfg, lim, nil)
	if err != nil || !strings.Contains(string(rr.Upstream), `"input":"hi"`) || !rr.Store || rr.MaxTokens != 0 || rr.Room < 1 {
		t.Fatalf("%+v %v", rr, err)
	}
	// Tools and function-call items are in the bound.
	tools, err := openai.ParseResponses([]byte(`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{\"a\":1}"},
		{"type":"function_call_output","call_id":"c","output":"42"}],"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]}`), cfg, lim, nil)
	if err != nil || tools.PromptBytes < int64(len(`{"a":1}`)+len("42")+len(`{"type":"function","name":"f"}`)) || tools.ExtraTokens <= 128 {
		t.Fatalf("tools: %+v %v", tools, err)
	}
}

func TestParseResponsesRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ body, param, code string }{
		{`{"model":"m"}`, "input", sluice.CodeMissingRequired},
		{`{"model":"m","input":[]}`, "input", sluice.CodeInvalidValue},
		{`{"model":"m","input":5}`, "input", sluice.CodeInvalidValue},
		{`{"model":"m","input":"x","Input":"y"}`, "Input", sluice.CodeDuplicateKey},
		{`{"model":"m","input":"x","stream_options":{}}`, "stream_options", sluice.CodeUnknownParameter},
		{`{"model":"m","input":[{"role":"wizard","content":"x"}]}`, "input[0].role", sluice.CodeInvalidValue},
		{`{"model":"m","input":[{"role":"user","content":[{"type":"input_image","image_url":"x"}]}]}`, "input[0].content[0]", sluice.CodeUnsupportedParameter},
		{`{"model":"m","input":[{"role":"user","content":"x","extra":1}]}`, "input[0].extra", sluice.CodeUnknownParameter},
		{`{"model":"m","input":[{"type":"function_call","name":"f"}]}`, "input[0].arguments", sluice.CodeInvalidValue},
		{`{"model":"m","input":"x","max_output_tokens":0}`, "max_output_tokens", sluice.CodeInvalidValue},
		{`{"model":"m","input":"x","max_output_tokens":100}`, "max_output_tokens", sluice.CodeContextLengthExceeded},
		{`{"model":"m","input":"` + strings.Repeat("x", 405) + `"}`, "input", sluice.CodeContextLengthExceeded},
		{`{"model":"m","input":"x","previous_response_id":"resp_2"}`, "", sluice.CodeNotFound},
		{`{"model":"m","input":"x","temperature":3}`, "temperature", sluice.CodeInvalidValue},
		{`{"model":"m","input":"x","store":"yes"}`, "store", sluice.CodeInvalidValue},
	} {
		_, err := openai.ParseResponses([]byte(c.body), cfg, lim, history)
		if e := sluice.AsError(err); err == nil || e.Code != c.code || e.Param != c.param {
			t.Errorf("%s: %v (param %q code %q), want %s %s", c.body, err, e.Param, e.Code, c.param, c.code)
		}
	}
	// The history counts toward the context too: a long chain is refused.
	long := func(string) ([]json.RawMessage, error) {
		return []json.RawMessage{json.RawMessage(`{"role":"user","content":"` + strings.Repeat("y", 420) + `"}`)}, nil
	}
	if _, err := openai.ParseResponses([]byte(`{"model":"m","input":"x","previous_response_id":"r"}`), cfg, lim, long); sluice.AsError(err).Code != sluice.CodeContextLengthExceeded {
		t.Fatalf("a history past the context: %v", err)
	}
}

func FuzzParseResponses(f *testing.F) {
	f.Add(`{"model":"m","input":"hello","max_output_tokens":5}`)
	f.Add(`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]}],"stream":true,"instructions":"i"}`)
	f.Add(`{"model":"m","input":"x","previous_response_id":"resp_1","store":false,"metadata":{"k":"v"}}`)
	f.Add(`{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{\"a\":1}"},{"type":"function_call_output","call_id":"c","output":"1"}],"tools":[{"type":"function"}]}`)
	f.Add(`{"model":"m","input":"x","INPUT":"y"}`)
	f.Fuzz(func(t *testing.T, body string) {
		rr, err := openai.ParseResponses([]byte(body), cfg, lim, history)
		if err != nil {
			if e := sluice.AsError(err); e.Kind != sluice.KindInvalid && e.Kind != sluice.KindNotFound {
				t.Fatalf("ParseResponses(%q) gave a %v error: %v", body, e.Kind, err)
			}
			return
		}
		if !json.Valid(rr.Upstream) || !json.Valid(rr.Input) || rr.MaxTokens < 0 || rr.MaxTokens >= 100 || rr.PromptBytes <= 0 {
			t.Fatalf("ParseResponses(%q) accepted a bad request: %+v", body, rr)
		}
		var up map[string]json.RawMessage
		if json.Unmarshal(rr.Upstream, &up) != nil {
			t.Fatalf("upstream %s", rr.Upstream)
		}
		for _, k := range []string{"store", "previous_response_id", "metadata"} {
			if _, ok := up[k]; ok {
				t.Fatalf("ParseResponses(%q): %s reached the engine: %s", body, k, rr.Upstream)
			}
		}
		// The engine's body parses strictly too, with the same bound: what
		// was admitted is what runs.
		again, err := openai.ParseResponses(rr.Upstream, cfg, lim, nil)
		if err != nil || again.PromptBytes != rr.PromptBytes || again.MaxTokens != rr.MaxTokens || again.Messages != rr.Messages {
			t.Fatalf("ParseResponses(%q): its upstream %q parses differently: %+v %v", body, rr.Upstream, again, err)
		}
	})
}
