package engine_test

import (
	"testing"

	"github.com/sluice-ai/sluice/gpuworker/engine"
)

// A cut stream pays one completion token per chunk that carried output; the
// role-only first chunk vLLM sends (content "") is not one.
func TestProducesTokens(t *testing.T) {
	for _, c := range []struct {
		chunk string
		want  bool
	}{
		{`{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`, false},
		{`{"choices":[{"index":0,"delta":{"role":"assistant"}}]}`, false},
		{`{"choices":[{"index":0,"delta":{"content":"Hi"}}]}`, true},
		{`{"choices":[{"index":0,"text":" the","logprobs":null}]}`, true},
		{`{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}`, false},
		{`{"choices":[{"index":0,"delta":{"reasoning_content":"so"}}]}`, true},
		{`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}`, true},
		{`{"choices":[{"index":0,"delta":{"content":""},"finish_reason":"length"}]}`, false},
	} {
		if got := engine.ProducesTokens([]byte(c.chunk)); got != c.want {
			t.Errorf("ProducesTokens(%s) = %v, want %v", c.chunk, got, c.want)
		}
	}
}
