package testenv_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
)

// TestRedisCluster: TEST_REDIS_CLUSTER_URL reaches a working cluster (keys
// on every master); without it the test skips
// (scripts/testenv.sh with-cluster go test ./internal/testenv runs it).
func TestRedisCluster(t *testing.T) {
	c := testenv.RedisCluster(t)
	prefix := testenv.Name("cluster")
	for i := range 32 { // spread over the slots, so over every master
		k := fmt.Sprintf("%s:%d", prefix, i)
		if err := c.Set(t.Context(), k, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Get(t.Context(), k).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v", k, v, err)
		}
		c.Del(t.Context(), k)
	}
	var masters atomic.Int32
	if err := c.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error { masters.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if masters.Load() < 2 {
		t.Errorf("%d masters; a cluster test wants at least 2", masters.Load())
	}
}
