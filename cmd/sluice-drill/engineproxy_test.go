package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestVLLMView: the proxy forwards what vLLM would act on: exact-case keys
// only (the case variants a Go decoder would take are dropped), and the
// chat template's material outside message text as prompt text.
func TestVLLMView(t *testing.T) {
	_, body := hostileBody(kindCase, "t1")
	var job map[string]json.RawMessage
	if err := json.Unmarshal([]byte(`{"b":`+body+`}`), &job); err != nil {
		t.Fatal(err)
	}
	view, stream := vllmView("/v1/chat/completions", job["b"])
	var f map[string]json.RawMessage
	if err := json.Unmarshal(view, &f); err != nil {
		t.Fatal(err)
	}
	if stream || string(f["n"]) != "3" || string(f["max_tokens"]) != "64" || f["N"] != nil || f["MESSAGES"] != nil || f["MAX_TOKENS"] != nil {
		t.Fatalf("case view: %s", view)
	}
	if !strings.Contains(string(f["messages"]), "drill-tag:t1") {
		t.Fatalf("case view lost the real messages: %s", f["messages"])
	}

	_, body = hostileBody(kindTools, "t2")
	view, _ = vllmView("/v1/chat/completions", []byte(body))
	if err := json.Unmarshal(view, &f); err != nil {
		t.Fatal(err)
	}
	var msgs []struct{ Role, Content string }
	if err := json.Unmarshal(f["messages"], &msgs); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 4 || msgs[0].Role != "system" || f["tools"] != nil || f["response_format"] != nil {
		t.Fatalf("tools view: %s", view)
	}
	for _, want := range []string{"tools: ", "response_format: ", "tool_calls: ", "field_9", "arg6"} {
		if !strings.Contains(msgs[0].Content, want) {
			t.Errorf("rendered template material lacks %q", want)
		}
	}
	if len(msgs[0].Content) < len(body)/2 {
		t.Errorf("rendered %d bytes of a %d-byte body", len(msgs[0].Content), len(body))
	}
}

func TestContentChunk(t *testing.T) {
	for in, want := range map[string]int64{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`: 0,
		`{"choices":[{"index":0,"delta":{"content":"tok"}}]}`:                 1,
		`{"choices":[{"index":0,"text":"tok"}]}`:                              1,
		`{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}`:    0,
	} {
		if got := contentChunk([]byte(in)); got != want {
			t.Errorf("contentChunk(%s) = %d, want %d", in, got, want)
		}
	}
}
