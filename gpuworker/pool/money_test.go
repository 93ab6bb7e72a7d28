package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// These tests are the worker's part of the hostile-client money suite: a
// request that fails on the engine stays that request's failure, and every
// job the engine ran pays for the prompt it processed.

// startSimSeqs starts a simulator of model with seqs concurrent sequences.
func startSimSeqs(t *testing.T, model string, seqs int, extra ...string) *devstack.Sim {
	t.Helper()
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), model, 2048, seqs, "", extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	return sim
}

// waitHealthy waits until every endpoint of the worker is in rotation.
func waitHealthy(t *testing.T, h *harness) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ok := true
		for _, e := range h.p.Endpoints() {
			ok = ok && e.Healthy
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints: %+v", h.p.Endpoints())
		}
	}
}

// waitJob waits for a job's final state.
func waitJob(t *testing.T, h *harness, id string, within time.Duration) *sluice.JobState {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		js, err := h.q.Get(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		if js.Status.Terminal() {
			return js
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s", id, js.Status, within)
		}
	}
}

// usageRow waits for a job's usage row and returns its prompt and completion tokens.
func usageRow(t *testing.T, h *harness, id string) (prompt, completion int64) {
	t.Helper()
	var rows int
	for deadline := time.Now().Add(10 * time.Second); rows == 0; time.Sleep(20 * time.Millisecond) {
		h.db.Pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
			FROM inference_requests WHERE job_id = $1`, id).Scan(&rows, &prompt, &completion) //nolint:errcheck
		if time.Now().After(deadline) {
			t.Fatalf("no usage row for job %s", id)
		}
	}
	if rows != 1 {
		t.Fatalf("job %s: %d usage rows, want 1", id, rows)
	}
	return prompt, completion
}

// tokenizeCount asks an engine's /tokenize how many tokens messages are.
func tokenizeCount(t *testing.T, base, model, content string) int64 {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": content}}})
	resp, err := http.Post(base+"/tokenize", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Count <= 0 {
		t.Fatalf("tokenize: %v %+v", err, out)
	}
	return out.Count
}

func errCode(js *sluice.JobState) string {
	if js.Error == nil {
		return ""
	}
	return fmt.Sprint(js.Error.Code)
}

const poisonMarker = "POISON-c0ffee-resets-the-engine"

// TestPoisonJobBesideTwentyStreams (issue 13, finding 5, must-show 3): one
// async job whose every request has its connection reset (the fault proxy,
// as when a request crashes or drops vLLM's connection) runs beside 20
// streams of another user on the same endpoint. All 20 complete; the poison
// job fails within a bounded time with max_attempts_exceeded after
// jobs.max_attempts engine hits and pays its prompt; the endpoint is never
// taken out of rotation.
func TestPoisonJobBesideTwentyStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("poison")
	sim := startSimSeqs(t, model, 32, "--inter-token-latency", "10ms")
	fp := enginetest.StartFaultProxy(t, sim.URL, poisonMarker)
	fp.ResetAfter = 50 * time.Millisecond // the engine takes the prompt in before it drops
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 32, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
worker: {retry_backoff: 10ms, usage_flush: 20ms}
dispatch: {health_interval: 100ms}
`, model, fp.URL))
	waitHealthy(t, h)
	victim, err := h.db.UpsertUser(ctx, model+"-victim@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}

	poisonText := "please answer " + poisonMarker + " in detail"
	poison := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Async: true,
		Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":10}`, model, poisonText))}
	streams := make([]string, 20)
	start := time.Now()
	for i := range streams {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: victim.ID, Model: model, Endpoint: sluice.EndpointChat, Stream: true,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"tell a story %d"}],"max_tokens":120,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`, model, i))}
		if err := h.q.Enqueue(ctx, j, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		streams[i] = j.ID
		if i == 5 {
			if err := h.q.Enqueue(ctx, poison, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}

	var wg sync.WaitGroup
	var poisonState *sluice.JobState
	var poisonTook time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		poisonState = waitJob(t, h, poison.ID, 60*time.Second)
		poisonTook = time.Since(start)
	}()
	completed := 0
	for _, id := range streams {
		js := waitJob(t, h, id, 60*time.Second)
		if js.Status == sluice.JobSucceeded {
			completed++
		} else {
			t.Errorf("victim stream %s: %s %+v", id, js.Status, js.Error)
		}
	}
	wg.Wait()
	takeOuts := h.p.Endpoints()[0].TakeOuts
	prompt, completion := usageRow(t, h, poison.ID)
	want := tokenizeCount(t, sim.URL, model, poisonText)
	t.Logf("figures: victim streams completed %d/20; poison job %s (%s) after %s; engine hits %d (max_attempts %d); endpoint take-outs %d; poison billed prompt %d tokens (engine's tokenizer counts %d), completion %d; prompt source %q",
		completed, poisonState.Status, errCode(poisonState), poisonTook.Round(time.Millisecond), fp.Hits(), h.q.MaxAttempts(), takeOuts,
		prompt, want, completion, poisonState.Usage.PromptSource)

	if completed != 20 {
		t.Fatalf("%d of 20 victim streams completed", completed)
	}
	if poisonState.Status != sluice.JobFailed || (errCode(poisonState) != sluice.CodeMaxAttempts && errCode(poisonState) != sluice.CodeEngineError) {
		t.Fatalf("poison job: %s %+v", poisonState.Status, poisonState.Error)
	}
	if poisonTook > 20*time.Second {
		t.Fatalf("poison job took %s to fail", poisonTook)
	}
	if hits := fp.Hits(); hits < 1 || hits > int64(h.q.MaxAttempts()) {
		t.Fatalf("poison request reached the engine %d times, want 1..%d", hits, h.q.MaxAttempts())
	}
	if takeOuts != 0 {
		t.Fatalf("endpoint taken out %d times by one request's failure", takeOuts)
	}
	if prompt != want || poisonState.Usage == nil || poisonState.Usage.PromptSource != sluice.PromptSourceTokenize {
		t.Fatalf("poison job billed prompt %d (%+v), want %d from the tokenizer", prompt, poisonState.Usage, want)
	}
	h.stop(t)
}

// TestFailedRequestStaysPerRequest (issue 13, finding 5): the failure
// classes. A reset of one request on a healthy engine spends an attempt
// (no take-out, no refund): the job ends after exactly jobs.max_attempts
// engine hits with max_attempts_exceeded. A request whose engine dies under
// it is not retried on the other, healthy engine: it fails with engine_error
// and pays its prompt.
func TestFailedRequestStaysPerRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("perreq")
	dying := startSimSeqs(t, model, 8, "--inter-token-latency", "20ms")
	healthy := startSimSeqs(t, model, 8)
	// Both engines drop the poison request; the healthy one is proxied too.
	fp := enginetest.StartFaultProxy(t, dying.URL, poisonMarker)
	fp2 := enginetest.StartFaultProxy(t, healthy.URL, poisonMarker)
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 2048, endpoints: [%q, %q]}]}
pricing: null
worker: {retry_backoff: 10ms, usage_flush: 20ms}
dispatch: {health_interval: 100ms}
`, model, fp.URL, fp2.URL))
	waitHealthy(t, h)

	t.Run("reset", func(t *testing.T) {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":5}`, model, poisonMarker))}
		if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		js := waitJob(t, h, j.ID, 30*time.Second)
		if js.Status != sluice.JobFailed || errCode(js) != sluice.CodeMaxAttempts {
			t.Fatalf("job: %s %+v", js.Status, js.Error)
		}
		// Each attempt may land on either endpoint: one engine hit per attempt.
		if hits := fp.Hits() + fp2.Hits(); hits != int64(h.q.MaxAttempts()) {
			t.Fatalf("engine hits %d, want jobs.max_attempts = %d", hits, h.q.MaxAttempts())
		}
		for _, e := range h.p.Endpoints() {
			if e.TakeOuts != 0 {
				t.Fatalf("endpoint %s taken out %d times", e.URL, e.TakeOuts)
			}
		}
		if p, _ := usageRow(t, h, j.ID); p <= 0 {
			t.Fatalf("prompt billed %d", p)
		}
	})

	t.Run("engine dies", func(t *testing.T) {
		content := "a long answer please"
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":400,"ignore_eos":true}`, model, content))}
		base := fp.Served()
		if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		// The job starts on the first endpoint (listed first, as free as the other).
		for deadline := time.Now().Add(10 * time.Second); fp.Served() == base; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the job never reached the first endpoint")
			}
		}
		time.Sleep(300 * time.Millisecond)
		dying.Stop()
		js := waitJob(t, h, j.ID, 30*time.Second)
		if js.Status != sluice.JobFailed || errCode(js) != sluice.CodeEngineError {
			t.Fatalf("job: %s %+v (want engine_error, not a retry on the healthy engine)", js.Status, js.Error)
		}
		p, _ := usageRow(t, h, j.ID)
		if fp2.Served() != 1 { // the /tokenize call that priced the prompt, no retry
			t.Fatalf("the healthy engine got %d requests, want only the /tokenize call", fp2.Served())
		}
		if want := tokenizeCount(t, healthy.URL, model, content); p != want {
			t.Fatalf("prompt billed %d, want %d", p, want)
		}
	})
	h.stop(t)
}

// TestCutStreamPaysPrompt (issue 13, finding 4): a stream cut before its
// usage chunk pays the prompt the engine processed (counted by the engine's
// /tokenize on a healthy endpoint of the model, or the held prompt bound
// when no tokenizer answers) plus the completion tokens it produced.
func TestCutStreamPaysPrompt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, withTokenizer := range []bool{true, false} {
		t.Run(fmt.Sprintf("tokenizer=%v", withTokenizer), func(t *testing.T) {
			t.Parallel()
			model := testenv.Name("cut")
			sim := startSimSeqs(t, model, 4, "--inter-token-latency", "20ms")
			eps := fmt.Sprintf("%q", sim.URL)
			var other *devstack.Sim
			if withTokenizer {
				other = startSimSeqs(t, model, 4)
				eps += fmt.Sprintf(", %q", other.URL)
			}
			h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 2048, endpoints: [%s]}]}
pricing: null
worker: {usage_flush: 20ms}
`, model, eps))
			waitHealthy(t, h)
			content := "summarise the history of the printing press in great detail"
			j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Stream: true,
				Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":500,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`, model, content))}
			const heldPrompt = 777
			if !withTokenizer {
				// The hold admission took for this job (P|M|prices|...), as admit.lua writes it.
				if err := h.q.Client().HSet(ctx, "sluice:{u:"+h.user+"}:holds", j.ID, fmt.Sprintf("%d|500|1|1|0|0|0|2026-12|%s", heldPrompt, model)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
				t.Fatal(err)
			}
			after, chunks := "0", 0
			var end redisq.Event
			for end.Type == "" {
				evs, err := h.q.Events(ctx, j.ID, after, 20*time.Second)
				if err != nil || len(evs) == 0 {
					t.Fatalf("events: %v", err)
				}
				for _, e := range evs {
					after = e.ID
					switch e.Type {
					case "chunk":
						chunks++
						if chunks == 5 {
							sim.Stop() // cut before the usage chunk
						}
					case "end":
						end = e
					}
				}
			}
			if end.Status != sluice.JobFailed || !strings.Contains(end.Error, "stream_interrupted") {
				t.Fatalf("end: %+v", end)
			}
			prompt, completion := usageRow(t, h, j.ID)
			want, source := int64(heldPrompt), sluice.PromptSourceHold
			if withTokenizer {
				want, source = tokenizeCount(t, other.URL, model, content), sluice.PromptSourceTokenize
			}
			js, err := h.q.Get(ctx, j.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cut after %d chunks: billed prompt %d (want %d, source %q), completion %d", chunks, prompt, want, js.Usage.PromptSource, completion)
			if prompt != want || js.Usage.PromptSource != source {
				t.Fatalf("prompt billed %d from %q, want %d from %q", prompt, js.Usage.PromptSource, want, source)
			}
			if completion < 4 || completion >= 500 {
				t.Fatalf("completion billed %d, want what was produced", completion)
			}
			h.stop(t)
		})
	}
}
