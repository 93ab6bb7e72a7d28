// Package testenv gives tests the real services they run against: a
// PostgreSQL schema per test (TEST_DATABASE_URL), Redis (TEST_REDIS_URL), and
// the llm-d-inference-sim binary (SLUICE_SIM, or bin/vllm-sim).
package testenv

import (
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/redisq/redistest"
	"github.com/sluice-ai/sluice/shared/stripe/stripetest"
)

// RedisURL is the Redis tests use.
func RedisURL() string { return redistest.URL() }

// Redis returns a client of the test Redis. Tests isolate by using model
// names (and so keys) of their own, see Name.
func Redis(tb testing.TB) redis.UniversalClient { return redistest.Client(tb) }

// Name returns a unique name with prefix, for models and users of one test.
func Name(prefix string) string { return redistest.Name(prefix) }

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
// (SLUICE_OIDC_PROVIDER, or bin/oidc-provider from the repository root), skipping the test if it is not built (make test builds it).
func OIDCProvider(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("SLUICE_OIDC_PROVIDER")
	if bin == "" {
		bin = "../../bin/oidc-provider" // from a package two levels down
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("OpenID provider not built (make test builds it): %v", err)
	}
	return bin
}

// Pepper is a fixed test pepper (32+ bytes).
const Pepper = "test-pepper-0123456789abcdef0123456789abcdef"

// StripeMock starts stripe-mock for one test and returns its API base (see
// stripetest.Mock).
func StripeMock(tb testing.TB) string { return stripetest.Mock(tb) }

// RedisClusterURL is TEST_REDIS_CLUSTER_URL: a Redis Cluster for the tests
// that need one (`scripts/testenv.sh with-cluster make test` starts a local
// one), in go-redis's cluster URL form
// redis://host:port?addr=host:port&addr=host:port.
func RedisClusterURL() string { return os.Getenv("TEST_REDIS_CLUSTER_URL") }

// RedisCluster returns a client of the test Redis Cluster, closed when the
// test ends; it skips the test when TEST_REDIS_CLUSTER_URL is not set.
func RedisCluster(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	url := RedisClusterURL()
	if url == "" {
		tb.Skip("TEST_REDIS_CLUSTER_URL not set (scripts/testenv.sh cluster-start prints one)")
	}
	opts, err := redis.ParseClusterURL(url)
	if err != nil {
		tb.Fatalf("TEST_REDIS_CLUSTER_URL %q: %v", url, err)
	}
	c := redis.NewClusterClient(opts)
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(tb.Context()).Err(); err != nil {
		tb.Fatalf("Redis Cluster at %s: %v", url, err)
	}
	return c
}
