package rconn_test

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rconn"
)

// TestOpenServerWithoutClusterSection: a server that refuses INFO's cluster
// section (the local stack's embedded miniredis) is a single server, not a
// failed start (`make run` without REDIS_URL failed on it).
func TestOpenServerWithoutClusterSection(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	rdb, err := rconn.Open(context.Background(), "redis://"+m.Addr(), rconn.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.Client); !ok {
		t.Fatalf("client %T, want a single-server client", rdb)
	}
	if err := rdb.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenUnreachable: a server that does not answer is an error at start.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	addr := m.Addr()
	m.Close()
	if _, err := rconn.Open(context.Background(), "redis://"+addr, rconn.Options{}); err == nil {
		t.Fatal("open of a closed port succeeded")
	}
}
