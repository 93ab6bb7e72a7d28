package pool_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestLostWorkerShownOutputIsBilled (issue 13): a worker is lost after its
// stream showed output (here a consumer that claims, starts and relays
// chunks, then never acknowledges, as a kill -9 leaves it). The worker that
// reclaims the job does not run it again, but bills what the client was
// shown: the prompt by the engine's tokenizer and one completion token per
// chunk carrying output (the role chunk is not one).
func TestLostWorkerShownOutputIsBilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("lost")
	sim := startSim(t, model, 1024)
	h := startPoolLater(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 1024, endpoints: [%q]}]}
pricing: null
worker: {usage_flush: 20ms, heartbeat: 100ms, claim_idle: 500ms}
`, model, sim.URL))
	j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Stream: true,
		Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Tell me a long story about a lighthouse keeper."}],"max_tokens":50,"stream":true}`, model))}
	if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, s := range h.q.Streams(model, config.Priorities) {
		if err := h.q.EnsureGroup(ctx, s, rkey.GroupWorkers); err != nil {
			t.Fatal(err)
		}
	}
	var es []redisq.Entry
	for deadline := time.Now().Add(5 * time.Second); len(es) == 0; time.Sleep(10 * time.Millisecond) {
		var err error
		if es, _, err = h.q.Claim(ctx, rkey.GroupWorkers, "lost", model, config.Priorities, 1, false); err != nil || time.Now().After(deadline) {
			t.Fatalf("claim: %v %v", es, err)
		}
	}
	if out, _, err := h.q.Start(ctx, es[0], rkey.GroupWorkers, "lost", model); err != nil || out != redisq.StartRun {
		t.Fatalf("start: %s %v", out, err)
	}
	shown := []string{
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Once"}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" upon"}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" a"}}]}`,
	}
	if err := h.q.Chunks(ctx, j.ID, shown, true); err != nil {
		t.Fatal(err)
	}
	h.start() // the surviving worker reclaims it after claim_idle

	after := "0"
	var end redisq.Event
	for end.Type == "" {
		evs, err := h.q.Events(ctx, j.ID, after, 20*time.Second)
		if err != nil || len(evs) == 0 {
			t.Fatalf("events: %v", err)
		}
		for _, e := range evs {
			after = e.ID
			if e.Type == "end" {
				end = e
			}
		}
	}
	if end.Status != sluice.JobFailed || !strings.Contains(end.Error, "stream_interrupted") {
		t.Fatalf("end: %+v", end)
	}
	var rows int
	var prompt, completion int64
	for deadline := time.Now().Add(10 * time.Second); rows == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
			FROM inference_requests WHERE job_id = $1`, j.ID).Scan(&rows, &prompt, &completion) //nolint:errcheck
	}
	if rows != 1 || prompt == 0 || completion != 3 {
		t.Fatalf("usage rows %d, %d+%d tokens: want one row, the prompt by /tokenize and the 3 tokens shown", rows, prompt, completion)
	}
	t.Logf("reclaimed after its worker was lost: billed %d prompt tokens (tokenizer) + %d shown", prompt, completion)
	h.stop(t)
}
