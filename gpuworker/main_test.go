package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestWorkerRunsWithoutKeyPepper starts the worker as its main does, with
// no SLUICE_KEY_PEPPER in its environment, and has it serve a job on the
// simulator: the pepper verifies API keys, which the worker never does.
func TestWorkerRunsWithoutKeyPepper(t *testing.T) {
	t.Parallel()
	model := testenv.Name("nopepper")
	sim, err := devstack.StartSim(context.Background(), testenv.Sim(t), model, 512, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	cfgPath := filepath.Join(t.TempDir(), "sluice.yaml")
	yml := fmt.Sprintf("inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 512, endpoints: [%q]}]}\npricing: null\nworker: {listen: \"off\", usage_flush: 20ms}\n", model, sim.URL)
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	dbURL := pgtest.NewURL(t)
	db, err := postgres.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, err := db.UpsertUser(context.Background(), model+"@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": testenv.RedisURL(),
		"SLUICE_CONFIG": cfgPath, "SLUICE_WORKER_NAME": "w-" + model,
		"SLUICE_WEBHOOK_SECRET": strings.Repeat("w", 32)} // webhooks are signed; keys are not verified here
	// Without the webhook secret the worker refuses to start (it would sign
	// job webhooks with an empty key); that is the one secret it needs.
	noSecret := maps.Clone(env)
	delete(noSecret, "SLUICE_WEBHOOK_SECRET")
	if code := run(context.Background(), func(k string) string { return noSecret[k] }); code != 1 {
		t.Fatalf("without SLUICE_WEBHOOK_SECRET the worker exited with %d, want 1", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }) }()

	q := redisq.New(testenv.Redis(t), redisq.Options{})
	j := &sluice.Job{ID: rkey.NewJobID(model), UserID: u.ID, Model: model, Endpoint: sluice.EndpointChat,
		Body: []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, model))}
	if err := q.Enqueue(ctx, j, time.Minute); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case code := <-done:
			t.Fatalf("the worker exited with %d before serving the job", code)
		default:
		}
		js, err := q.Get(ctx, j.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if js.Status.Terminal() {
			if js.Status != sluice.JobSucceeded {
				t.Fatalf("job ended %s: %s", js.Status, js.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s", js.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rows int // its usage reached PostgreSQL through the worker's own connection
	for rows == 0 && time.Now().Before(deadline) {
		db.Pool.QueryRow(ctx, `SELECT count(*) FROM inference_requests WHERE job_id = $1`, j.ID).Scan(&rows) //nolint:errcheck
		time.Sleep(20 * time.Millisecond)
	}
	if rows != 1 {
		t.Fatalf("%d usage rows for the job, want 1", rows)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("the worker exited with %d", code)
	}
}
