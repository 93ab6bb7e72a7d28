package pool_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestShardLoad is a load harness, not part of the suite: it runs only with
// SLUICE_SHARD_LOAD=<jobs> and TEST_REDIS_URL naming a cluster of its own
// (it resets the masters' command statistics). A worker serves one model
// whose queue is split over SLUICE_SHARD_LOAD_SHARDS shards (default 6),
// 32 synchronous clients, for 600 users in turn, each enqueue a job and wait for its
// end event, and then it prints each master's command counts (INFO
// commandstats): with the shards' slots spread over the masters, one
// model's load spreads over them too.
func TestShardLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SLUICE_SHARD_LOAD"))
	if n <= 0 {
		t.Skip("a load harness: set SLUICE_SHARD_LOAD=<jobs>")
	}
	shards := 6
	if s, err := strconv.Atoi(os.Getenv("SLUICE_SHARD_LOAD_SHARDS")); err == nil {
		shards = s
	}
	ctx := context.Background()
	const model, clients, users = "bench-7b", 32, 600
	sim := startSimSeqs(t, model, 64)
	h := startPool(t, model, fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 64, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
jobs: {shards: %d}
`, model, sim.URL, shards))
	waitHealthy(t, h)
	cc, ok := h.q.Client().(*redis.ClusterClient)
	if !ok {
		t.Fatal("TEST_REDIS_URL is not a cluster")
	}
	for s, tag := range h.q.ShardTags(model) {
		slot, _ := cc.ClusterKeySlot(ctx, rkey.ShardStreamKey(tag, model, 0)).Result()
		t.Logf("shard %d: tag %s, slot %d", s, tag, slot)
	}
	ids := make([]string, users)
	for i := range ids {
		u, err := h.db.UpsertUser(ctx, fmt.Sprintf("load-%d@example.com", i), "free", "user")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}
	// The clients are submit's part: their own connections (each waiting
	// request blocks one), as in a submit process apart from the worker.
	crdb, err := rconn.Open(ctx, testenv.RedisURL(), rconn.Options{PoolSize: 4 * clients})
	if err != nil {
		t.Fatal(err)
	}
	defer crdb.Close()
	cq := redisq.New(crdb, redisq.Options{Shards: shards})
	body := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":8}`, model))
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.ConfigResetStat(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				user := ids[i%users]
				j := &sluice.Job{ID: h.q.NewJobID(model, user), UserID: user, Model: model,
					Endpoint: sluice.EndpointChat, Priority: 1, Body: body}
				if err := cq.Enqueue(ctx, j, time.Minute); err != nil {
					failed.Add(1)
					continue
				}
				after := "0"
				for end := false; !end; {
					evs, err := cq.Events(ctx, j.ID, after, 5*time.Second)
					if err != nil {
						failed.Add(1)
						break
					}
					for _, e := range evs {
						after = e.ID
						end = end || e.Type == "end"
					}
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d jobs in %v (%.0f/s), %d failed, %d shards", n, took.Round(time.Millisecond), float64(n)/took.Seconds(), failed.Load(), shards)
	var mu sync.Mutex
	var lines []string
	cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { //nolint:errcheck // a report
		info, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return err
		}
		total, top := int64(0), map[string]int64{}
		for _, l := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
			if !ok {
				continue
			}
			v, _ := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
			total += v
			top[strings.TrimPrefix(name, "cmdstat_")] = v
		}
		names := make([]string, 0, len(top))
		for k := range top {
			names = append(names, k)
		}
		sort.Slice(names, func(a, b int) bool { return top[names[a]] > top[names[b]] })
		var parts []string
		for _, k := range names[:min(6, len(names))] {
			parts = append(parts, fmt.Sprintf("%s=%d", k, top[k]))
		}
		mu.Lock()
		lines = append(lines, fmt.Sprintf("master %s: %d calls (%s)", c.Options().Addr, total, strings.Join(parts, " ")))
		mu.Unlock()
		return nil
	})
	sort.Strings(lines)
	for _, l := range lines {
		t.Log(l)
	}
	h.stop(t)
}
