package pool_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestWebhookTarpitDelaysOnlyItsUser (issue 13, finding 8): one user's 24
// async jobs point their webhooks at a host that accepts and never answers;
// another user's 3 jobs, finished after them, point at a host that answers.
// The second user's webhooks arrive within a few seconds (not after the
// tarpit's attempts and backoffs have all run), and the tarpit never holds
// more than jobs.webhooks.user_concurrency deliveries at once.
func TestWebhookTarpitDelaysOnlyItsUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("tarpit")
	sim := startSimSeqs(t, model, 32)
	stop := make(chan struct{})
	var open, maxOpen, tarpitHits atomic.Int64
	tarpit := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck // read it all, so a client that gives up ends r.Context()
		tarpitHits.Add(1)
		n := open.Add(1)
		defer open.Add(-1)
		for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
		}
		select { // never answers: the delivery times out
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer tarpit.Close()
	defer close(stop)
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("Sluice-Webhook-Id")] = time.Now()
		mu.Unlock()
	}))
	defer good.Close()
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 32, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
jobs: {webhooks: {allow_private: true, timeout: 2s}}
worker: {usage_flush: 20ms}
`, model, sim.URL))
	waitHealthy(t, h)
	other, err := h.db.UpsertUser(ctx, model+"-other@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	enqueue := func(user, hook string) string {
		j := &sluice.Job{ID: rkey.NewJobID(model), UserID: user, Model: model, Endpoint: sluice.EndpointChat, Async: true,
			WebhookURL: hook, Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, model))}
		if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	var pit []string
	for range 24 {
		pit = append(pit, enqueue(h.user, tarpit.URL+"/hook"))
	}
	for _, id := range pit {
		waitJob(t, h, id, 30*time.Second)
	}
	// Let the tarpit's first deliveries time out and others take their
	// place, so the other user's jobs finish behind a backlog of them.
	for deadline := time.Now().Add(20 * time.Second); tarpitHits.Load() < 6; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d deliveries reached the tarpit", tarpitHits.Load())
		}
	}
	start := time.Now()
	var mine []string
	for range 3 {
		mine = append(mine, enqueue(other.ID, good.URL+"/hook"))
	}
	for deadline := start.Add(8 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := len(arrived)
		mu.Unlock()
		if n == len(mine) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d webhooks of the other user arrived within 8s (tarpit hits %d, %d open at most)",
				n, len(mine), tarpitHits.Load(), maxOpen.Load())
		}
	}
	took := time.Since(start)
	t.Logf("figures: other user's 3 webhooks arrived in %s; tarpit deliveries %d, at most %d open at once",
		took.Round(time.Millisecond), tarpitHits.Load(), maxOpen.Load())
	if m := maxOpen.Load(); m > 2 {
		t.Fatalf("the tarpit user held %d delivery slots at once, want at most user_concurrency = 2", m)
	}
	h.stop(t)
}

// TestWebhookRetryKeepsItsID: a delivery that fails waits its backoff in the
// due set (no slot held) and is delivered again with the same
// Sluice-Webhook-Id, so the receiver can drop duplicates.
func TestWebhookRetryKeepsItsID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("hookretry")
	sim := startSimSeqs(t, model, 4)
	var mu sync.Mutex
	var ids []string
	var at []time.Time
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, r.Header.Get("Sluice-Webhook-Id"))
		at = append(at, time.Now())
		if len(ids) == 1 {
			w.WriteHeader(http.StatusInternalServerError) // the first attempt fails
		}
	}))
	defer recv.Close()
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
jobs: {webhooks: {allow_private: true, timeout: 2s}}
`, model, sim.URL))
	waitHealthy(t, h)
	j := &sluice.Job{ID: rkey.NewJobID(model), UserID: h.user, Model: model, Endpoint: sluice.EndpointChat, Async: true,
		WebhookURL: recv.URL + "/hook", Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, model))}
	if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(ids)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries, want a retry", n)
		}
	}
	time.Sleep(1500 * time.Millisecond) // no third delivery after a success
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("deliveries with ids %q, want two with one id", ids)
	}
	if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
		t.Fatalf("retried after %s, want the 1s backoff", gap)
	}
	h.stop(t)
}
