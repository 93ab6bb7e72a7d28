package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestAgainstSimulator runs the client against llm-d-inference-sim: usage
// from whole and streamed answers, the engine's errors, health.
func TestAgainstSimulator(t *testing.T) {
	t.Parallel()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), "eng-7b", 128, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	ctx := context.Background()
	if !c.Healthy(ctx, 0) && !c.Healthy(ctx, 1e9) {
		t.Fatal("simulator not healthy")
	}
	res, err := c.Do(ctx, sluice.EndpointChat, []byte(`{"model":"eng-7b","messages":[{"role":"user","content":"hi"}],"max_tokens":7,"ignore_eos":true}`), false, nil)
	if err != nil || res.Usage.CompletionTokens != 7 || res.Usage.PromptTokens == 0 || len(res.Body) == 0 {
		t.Fatalf("whole: %+v %v", res, err)
	}
	var chunks []string
	res, err = c.Do(ctx, sluice.EndpointChat, []byte(`{"model":"eng-7b","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`), true,
		func(b []byte) error { chunks = append(chunks, string(b)); return nil })
	if err != nil || res.Usage.CompletionTokens != 5 || len(chunks) < 6 {
		t.Fatalf("stream: %+v %v (%d chunks)", res, err, len(chunks))
	}
	_, err = c.Do(ctx, sluice.EndpointChat, []byte(`{"model":"eng-7b","messages":[{"role":"user","content":"hi"}],"max_tokens":500}`), false, nil)
	var ee *engine.Error
	if !errors.As(err, &ee) || ee.Status != 400 || ee.Retryable || ee.Body.Code != sluice.CodeContextLengthExceeded {
		t.Fatalf("context length: %v", err)
	}
	down := engine.New("http://127.0.0.1:1", 1)
	if _, err := down.Do(ctx, sluice.EndpointChat, []byte(`{}`), false, nil); !errors.As(err, &ee) || !ee.Retryable || ee.Status != 0 {
		t.Fatalf("refused connection must be retryable: %v", err)
	}
	if down.Healthy(ctx, 1e9) {
		t.Fatal("a dead endpoint reported healthy")
	}
}
