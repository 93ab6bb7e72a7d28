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
)

// URL is the Redis tests use.
func URL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Client returns a client of the test Redis, closed when the test ends.
// Tests isolate by names of their own (Name): users, models, keys.
func Client(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	opt, err := redis.ParseURL(URL())
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
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
