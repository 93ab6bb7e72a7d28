// Package testenv gives tests the real services they run against: a
// PostgreSQL schema per test (TEST_DATABASE_URL), Redis (TEST_REDIS_URL), and
// the llm-d-inference-sim binary (SLUICE_SIM, or bin/vllm-sim).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
)

// RedisURL is the Redis tests use.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Redis returns a client of the test Redis. Tests isolate by using model
// names (and so keys) of their own, see Name.
func Redis(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(opt)
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("testenv: Redis at %s: %v (is it running?)", RedisURL(), err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Name returns a unique name with prefix, for models and users of one test.
func Name(prefix string) string {
	b := make([]byte, 5)
	rand.Read(b) //nolint:errcheck
	return prefix + "-" + hex.EncodeToString(b)
}

// Sim returns the simulator binary, skipping the test if it is not built.
func Sim(tb testing.TB) string {
	tb.Helper()
	bin, err := devstack.SimBinary(os.Getenv("SLUICE_SIM"))
	if err != nil {
		tb.Skipf("simulator not built (make sim): %v", err)
	}
	return bin
}

// OIDCProvider returns the zitadel/oidc example provider binary
// (SLUICE_OIDC_PROVIDER, or tools/oidcprovider/bin/oidc-provider from the
// repository root), skipping the test if it is not built (make test builds it).
func OIDCProvider(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("SLUICE_OIDC_PROVIDER")
	if bin == "" {
		bin = "../../tools/oidcprovider/bin/oidc-provider" // from a package two levels down
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("OpenID provider not built (make test builds it): %v", err)
	}
	return bin
}

// Pepper is a fixed test pepper (32+ bytes).
const Pepper = "test-pepper-0123456789abcdef0123456789abcdef"
