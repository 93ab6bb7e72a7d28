package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestPromptTokensAndFailureClasses: /tokenize prices a chat prompt and a
// batched completion (one call per prompt, summed; token-id prompts counted
// as sent), and the client tells a refused connection (Dial) from a reset
// of one request (not Dial) and a busy engine (Capacity).
func TestPromptTokensAndFailureClasses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), "tok-7b", 512, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	one := func(prompt string) int64 {
		n, err := c.PromptTokens(ctx, "tok-7b", sluice.EndpointCompletion, []byte(fmt.Sprintf(`{"prompt":%q}`, prompt)), 5*time.Second)
		if err != nil || n <= 0 {
			t.Fatalf("tokenize %q: %d %v", prompt, n, err)
		}
		return n
	}
	a, b := one("the quick brown fox"), one("jumps over the lazy dog again and again")
	n, err := c.PromptTokens(ctx, "tok-7b", sluice.EndpointCompletion,
		[]byte(`{"prompt":["the quick brown fox","jumps over the lazy dog again and again",[1,2,3]]}`), 5*time.Second)
	if err != nil || n != a+b+3 {
		t.Fatalf("batched prompt: %d %v, want %d", n, err, a+b+3)
	}
	chat, err := c.PromptTokens(ctx, "tok-7b", sluice.EndpointChat,
		[]byte(`{"messages":[{"role":"user","content":"the quick brown fox"}]}`), 5*time.Second)
	if err != nil || chat <= 0 {
		t.Fatalf("chat: %d %v", chat, err)
	}
	tgi := engine.New(sim.URL, 1)
	tgi.Kind = engine.KindTGI
	if _, err := tgi.PromptTokens(ctx, "tok-7b", sluice.EndpointChat, []byte(`{"messages":[]}`), time.Second); !errors.Is(err, engine.ErrNoTokenizer) {
		t.Fatalf("TGI has no /tokenize: %v", err)
	}

	var ee *engine.Error
	if _, err := engine.New("http://127.0.0.1:1", 1).Do(ctx, sluice.EndpointChat, []byte(`{}`), false, nil); !errors.As(err, &ee) || !ee.Dial {
		t.Fatalf("a refused connection is a dial failure: %v", err)
	}
	fp := enginetest.StartFaultProxy(t, sim.URL, "POISON")
	_, err = engine.New(fp.URL, 1).Do(ctx, sluice.EndpointChat, []byte(`{"model":"tok-7b","messages":[{"role":"user","content":"POISON"}]}`), false, nil)
	if !errors.As(err, &ee) || ee.Dial || ee.Status != 0 || ee.Capacity() {
		t.Fatalf("a reset is one request's transport failure: %v", err)
	}
	if ee := (&engine.Error{Status: 429}); !ee.Capacity() {
		t.Fatal("429 is capacity")
	}
}
