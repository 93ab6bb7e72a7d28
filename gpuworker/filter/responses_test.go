package filter_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// respStreamed sends text as Responses output_text deltas of size n, then
// the done events, and returns the deltas a client assembles, the done
// event's text and the sequence numbers it saw.
func respStreamed(t *testing.T, text string, n int) (deltas, done string, seqs []int64) {
	t.Helper()
	s := redactor(t).Stream()
	seq := 0
	send := func(ev map[string]any) {
		ev["sequence_number"] = seq
		seq++
		b, _ := json.Marshal(ev)
		for _, out := range s.Events(b) {
			var v struct {
				Type  string `json:"type"`
				Delta string `json:"delta"`
				Text  string `json:"text"`
				Seq   int64  `json:"sequence_number"`
				Part  struct {
					Text string `json:"text"`
				} `json:"part"`
			}
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			seqs = append(seqs, v.Seq)
			switch v.Type {
			case "response.output_text.delta":
				deltas += v.Delta
			case "response.output_text.done":
				done = v.Text
			case "response.content_part.done":
				if v.Part.Text != done {
					t.Fatalf("part text %q, done text %q", v.Part.Text, done)
				}
			}
		}
	}
	idx := map[string]any{"item_id": "msg_1", "output_index": 0, "content_index": 0}
	with := func(m map[string]any) map[string]any {
		for k, v := range idx {
			m[k] = v
		}
		return m
	}
	for i := 0; i < len(text); i += n {
		send(with(map[string]any{"type": "response.output_text.delta", "delta": text[i:min(i+n, len(text))]}))
	}
	send(with(map[string]any{"type": "response.output_text.done", "text": text}))
	send(with(map[string]any{"type": "response.content_part.done", "part": map[string]any{"type": "output_text", "text": text}}))
	return deltas, done, seqs
}

// A secret split across Responses deltas at any point is redacted as if
// whole, the done events carry the redacted text, and the sequence numbers
// stay consecutive though the held tail goes out as an extra delta.
func TestResponsesStreamSplitAnywhere(t *testing.T) {
	t.Parallel()
	want := redactor(t).Text(secretText)
	for n := 1; n <= len(secretText); n++ {
		deltas, done, seqs := respStreamed(t, secretText, n)
		if deltas != want || done != want {
			t.Fatalf("deltas of %d:\ngot  %s\ndone %s\nwant %s", n, deltas, done, want)
		}
		for i, s := range seqs {
			if s != int64(i) {
				t.Fatalf("deltas of %d: sequence numbers %v", n, seqs)
			}
		}
	}
}

func TestResponsesBody(t *testing.T) {
	t.Parallel()
	body := fmt.Sprintf(`{"id":"resp_1","object":"response","output":[{"type":"message","role":"assistant","content":[{"type":"output_text","text":%q,"annotations":[]}]}],"usage":{"input_tokens":12345678901}}`, secretText)
	out := string(redactor(t).Body([]byte(body)))
	if strings.Contains(out, "4111") || strings.Contains(out, "bob.smith") || !strings.Contains(out, "[REDACTED:api_key]") || !strings.Contains(out, "12345678901") {
		t.Fatal(out)
	}
	// A completed event's response object too.
	ev := fmt.Sprintf(`{"type":"response.completed","sequence_number":9,"response":%s}`, body)
	outs := redactor(t).Stream().Events([]byte(ev))
	if len(outs) != 1 || strings.Contains(string(outs[0]), "bob.smith") || !strings.Contains(string(outs[0]), "[REDACTED:email]") {
		t.Fatalf("%s", outs)
	}
}

func FuzzResponsesStream(f *testing.F) {
	f.Add(secretText, 3)
	f.Add("a@b.cd x@y.zz sk-aaaaaaaaaaaaaaaaaaaaaaaaa", 1)
	f.Fuzz(func(t *testing.T, text string, n int) {
		if n < 1 || n > 64 || len(text) > 200 || !json.Valid([]byte(fmt.Sprintf("%q", text))) {
			return
		}
		whole := redactor(t).Text(text)
		deltas, _, _ := respStreamed(t, text, n)
		if strings.ToValidUTF8(deltas, "") != strings.ToValidUTF8(whole, "") {
			t.Fatalf("deltas of %d:\ngot  %q\nwant %q", n, deltas, whole)
		}
	})
}
