// Package redistest gives tests a client of the test Redis (TEST_REDIS_URL,
// default redis://127.0.0.1:6379/0). It lives under shared/ so the
// functions' own tests can use it in their shrinkwrapped OpenFaaS build
// contexts, which carry shared/ only; internal/testenv builds on it.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rconn"
)

// URL is the Redis tests use.
func URL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Client returns a client of the test Redis, closed when the test ends:
// a cluster client when TEST_REDIS_URL names a Redis Cluster (the same
// probe production uses, rconn.Open). Tests isolate by names of their own
// (Name): users, models, keys.
func Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c, err := rconn.Open(context.Background(), URL(), rconn.Options{})
	if err != nil {
		tb.Fatalf("redistest: Redis at %s: %v (is it running?)", URL(), err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Name returns a unique name with prefix, for the users, models and ids of
// one test.
func Name(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b) //nolint:errcheck
	return prefix + "-" + hex.EncodeToString(b)
}
