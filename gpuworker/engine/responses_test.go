package engine_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestResponsesUsage: the engine's /v1/responses usage (input_tokens,
// output_tokens) is read from a plain answer and from a stream's
// response.completed; a stream cut before response.completed fails with
// one produced token per text delta it relayed (what a cut chat stream
// pays), and its prompt is priced by /tokenize of the messages vLLM makes
// of the input, as a chat prompt is.
func TestResponsesUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), "resp-7b", 512, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	body := []byte(`{"model":"resp-7b","input":"tell me a story","max_output_tokens":12}`)
	res, err := c.Do(ctx, sluice.EndpointResponses, body, false, nil)
	if err != nil || res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 ||
		res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens {
		t.Fatalf("plain: %+v %v", res, err)
	}
	var events [][]byte
	sbody := []byte(`{"model":"resp-7b","input":"tell me a story","max_output_tokens":12,"stream":true}`)
	res, err = c.Do(ctx, sluice.EndpointResponses, sbody, true, func(b []byte) error { events = append(events, b); return nil })
	if err != nil || res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 || len(events) < 5 {
		t.Fatalf("stream: %+v %v (%d events)", res, err, len(events))
	}
	t.Logf("stream: %d events, usage %+v, produced %d", len(events), res.Usage, res.Produced)

	// The same real stream, cut after its third text delta.
	// The simulator's answer has a random length, maybe under 3 tokens: ask
	// again until one has 3 deltas.
	raw := fetchStream(t, sim.URL, sbody)
	for try := 0; bytes.Count(raw, []byte("event: response.output_text.delta")) < 3 && try < 50; try++ {
		raw = fetchStream(t, sim.URL, sbody)
	}
	cut, deltas := raw, 0
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte("event: response.output_text.delta"))
		if j < 0 {
			t.Fatalf("fewer than 3 deltas in %s", raw)
		}
		i += j + 1
		if deltas++; deltas == 3 {
			end := bytes.Index(raw[i:], []byte("\n\n"))
			cut = raw[:i+end+2]
			break
		}
	}
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(cut) //nolint:errcheck
	}))
	defer replay.Close()
	res, err = engine.New(replay.URL, 1).Do(ctx, sluice.EndpointResponses, sbody, true, func([]byte) error { return nil })
	if err == nil || res.Produced != 3 || res.Usage.PromptTokens != 0 || res.Chunks == 0 {
		t.Fatalf("cut stream: %+v %v, want an error and 3 produced", res, err)
	}
	n, err := c.PromptTokens(ctx, "resp-7b", sluice.EndpointResponses,
		[]byte(`{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"tell me a story"}]}]}`), 5*time.Second)
	chat, cerr := c.PromptTokens(ctx, "resp-7b", sluice.EndpointChat,
		[]byte(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"tell me a story"}]}`), 5*time.Second)
	if err != nil || cerr != nil || n <= 0 || n != chat {
		t.Fatalf("responses prompt tokenized as %d (%v), the chat prompt as %d (%v)", n, err, chat, cerr)
	}
	t.Logf("cut stream: produced %d, chunks %d; prompt by /tokenize %d tokens", 3, res.Chunks, n)
}

func fetchStream(t *testing.T, base string, body []byte) []byte {
	t.Helper()
	resp, err := http.Post(base+"/v1/responses", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
