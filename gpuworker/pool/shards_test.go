package pool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestShardedQueue: over a model split into 4 shards, a worker runs the jobs
// of every shard, takes over the jobs a killed worker left running in every
// shard, and writes the usage of all of them (each shard's usage stream).
func TestShardedQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	model := testenv.Name("shard")
	sim := startSimSeqs(t, model, 8)
	// The killed worker's jobs are claimed before the worker starts.
	h := startPoolLater(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 8, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
jobs: {shards: 4}
worker: {claim_idle: 300ms, heartbeat: 50ms, usage_flush: 20ms}
`, model, sim.URL))
	shards := h.q.ShardTags(model)
	if len(shards) != 4 {
		t.Fatalf("shards: %v", shards)
	}
	users := map[int]string{} // shard → a user of it
	for i := 0; len(users) < 4; i++ {
		u, err := h.db.UpsertUser(ctx, fmt.Sprintf("%s-%d@example.com", model, i), "free", "user")
		if err != nil {
			t.Fatal(err)
		}
		if s := rkey.UserShard(u.ID, 4); users[s] == "" {
			users[s] = u.ID
		}
	}
	body := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, model))
	var ids []string
	for round := range 6 {
		for s := range 4 {
			j := &sluice.Job{ID: h.q.NewJobID(model, users[s]), UserID: users[s], Model: model,
				Endpoint: sluice.EndpointChat, Priority: round % 3, Body: body}
			if err := h.q.Enqueue(ctx, j, time.Minute); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, j.ID)
		}
	}
	// A worker claims one job in each shard, starts it and is killed.
	for _, s := range h.q.Streams(model, 3) {
		if err := h.q.EnsureGroup(ctx, s, rkey.GroupWorkers); err != nil {
			t.Fatal(err)
		}
	}
	ghost := map[string]bool{}
	for len(ghost) < 4 {
		es, _, err := h.q.Claim(ctx, rkey.GroupWorkers, "killed", model, 3, 4-int64(len(ghost)), false)
		if err != nil || len(es) == 0 {
			t.Fatalf("ghost claim: %v %v", es, err)
		}
		for _, r := range h.q.StartMany(ctx, es, rkey.GroupWorkers, "killed", model) {
			if r.Outcome != "run" {
				t.Fatalf("ghost start: %+v", r)
			}
			ghost[r.Claimed.Job.ID] = true
		}
	}
	tagsOf := map[string]bool{}
	for id := range ghost {
		tagsOf[rkey.JobTag(id)] = true
	}
	if len(tagsOf) != 4 {
		t.Fatalf("the killed worker's jobs are in %d shards, not 4", len(tagsOf))
	}
	h.start()
	for _, id := range ids {
		js := waitJob(t, h, id, 60*time.Second)
		if js.Status != sluice.JobSucceeded {
			t.Fatalf("job %s (shard %s): %s %+v", id, rkey.JobTag(id), js.Status, js.Error)
		}
	}
	var rows int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT job_id) FROM inference_requests`).Scan(&rows) //nolint:errcheck
		if rows >= len(ids) {
			break
		}
	}
	if rows != len(ids) {
		t.Fatalf("usage rows for %d of %d jobs", rows, len(ids))
	}
	h.stop(t)
}
