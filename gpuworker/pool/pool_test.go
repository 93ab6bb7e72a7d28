package pool_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestFailoverAndRetries runs a worker over two endpoints, one dead and one
// simulator that answers 429 to a third of requests: every job ends, the
// retried ones succeed on the live engine, and each job is recorded once.
func TestFailoverAndRetries(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := testenv.Name("pool")
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 512, 4, "",
		"--failure-injection-rate", "30", "--failure-types", "rate_limit")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	dead, _ := devstack.FreePort()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 512, endpoints: ["http://127.0.0.1:%d", %q]}]}
pricing: null
worker: {retries: 6, retry_backoff: 5ms, usage_flush: 20ms}
`, model, dead, sim.URL)))
	if err != nil {
		t.Fatal(err)
	}
	db := pgtest.New(t)
	u, err := db.UpsertUser(ctx, "pool@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	q := redisq.New(testenv.Redis(t), redisq.Options{})
	p, err := pool.New(pool.Deps{Config: cfg, Log: slog.New(slog.DiscardHandler), Queue: q, Usage: db, Name: "t-" + model})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	const n = 40
	ids := make([]string, n)
	for i := range ids {
		j := &sluice.Job{ID: redisq.NewJobID(model), UserID: u.ID, Model: model,
			Endpoint: sluice.EndpointChat, Priority: i % 3,
			Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, model))}
		if err := q.Enqueue(ctx, j, time.Minute); err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	deadline := time.Now().Add(60 * time.Second)
	succeeded := 0
	for _, id := range ids {
		for {
			js, err := q.Get(ctx, id, "")
			if err != nil {
				t.Fatal(err)
			}
			if js.Status.Terminal() {
				if js.Status == sluice.JobSucceeded {
					succeeded++
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s still %s", id, js.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if succeeded < n*9/10 {
		t.Fatalf("only %d of %d jobs succeeded despite retries", succeeded, n)
	}
	var rows, distinct int
	for time.Now().Before(deadline) {
		db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id) FROM inference_requests`).Scan(&rows, &distinct) //nolint:errcheck
		if rows >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rows != n || distinct != n {
		t.Fatalf("usage rows %d (distinct %d), want exactly %d", rows, distinct, n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
