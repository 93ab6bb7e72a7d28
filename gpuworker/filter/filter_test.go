package filter_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/gpuworker/filter"
	"github.com/sluice-ai/sluice/shared/config"
)

func redactor(t testing.TB) *filter.Redactor {
	t.Helper()
	r, err := filter.New(config.Filters{Enabled: true, Hold: 256,
		Custom: []config.FilterPattern{{Name: "ticket", Pattern: `TICKET-[0-9]{6}`}}})
	if err != nil || r == nil {
		t.Fatal(r, err)
	}
	return r
}

const secretText = "Mail bob.smith@example.co.uk the key sk-sluice-AbCdEfGhIjKlMnOpQrStUv12 and card 4111 1111 1111 1111, not 1234 5678 9012 3456; ref TICKET-004211."

func TestText(t *testing.T) {
	t.Parallel()
	got := redactor(t).Text(secretText)
	want := "Mail [REDACTED:email] the key [REDACTED:api_key] and card [REDACTED:card_number], not 1234 5678 9012 3456; ref [REDACTED:ticket]."
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if r, _ := filter.New(config.Filters{}); r != nil {
		t.Fatal("filters are off by default")
	}
}

// streamed splits text into chunks of size n and returns what a client sees.
func streamed(r *filter.Redactor, text string, n int) string {
	s := r.Stream()
	var out strings.Builder
	for i := 0; i < len(text); i += n {
		c, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": text[i:min(i+n, len(text))]}, "finish_reason": nil}}})
		out.WriteString(content(s.Chunk(c)))
	}
	end, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	out.WriteString(content(s.Chunk(end)))
	return out.String()
}

func content(b []byte) string {
	var v struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	json.Unmarshal(b, &v) //nolint:errcheck
	if len(v.Choices) == 0 {
		return ""
	}
	return v.Choices[0].Delta.Content
}

// A secret split across chunks at any point is redacted as if whole.
func TestStreamSplitAnywhere(t *testing.T) {
	t.Parallel()
	r := redactor(t)
	want := r.Text(secretText)
	for n := 1; n <= len(secretText); n++ {
		if got := streamed(r, secretText, n); got != want {
			t.Fatalf("chunks of %d:\ngot  %s\nwant %s", n, got, want)
		}
	}
}

func TestBody(t *testing.T) {
	t.Parallel()
	r := redactor(t)
	body := fmt.Sprintf(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":%q}}],"usage":{"prompt_tokens":12345678901}}`, secretText)
	out := string(r.Body([]byte(body)))
	if strings.Contains(out, "4111") || !strings.Contains(out, "[REDACTED:api_key]") || !strings.Contains(out, "12345678901") {
		t.Fatal(out)
	}
}

func FuzzStream(f *testing.F) {
	f.Add(secretText, 3)
	f.Add("a@b.cd x@y.zz sk-aaaaaaaaaaaaaaaaaaaaaaaaa", 1)
	f.Fuzz(func(t *testing.T, text string, n int) {
		if n < 1 || n > 64 || len(text) > 200 || !json.Valid([]byte(fmt.Sprintf("%q", text))) {
			return
		}
		r := redactor(t)
		whole := r.Text(text)
		got := streamed(r, text, n)
		if strings.ToValidUTF8(got, "") != strings.ToValidUTF8(whole, "") {
			t.Fatalf("chunks of %d:\ngot  %q\nwant %q", n, got, whole)
		}
	})
}
