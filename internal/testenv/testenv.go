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

// StripeMock starts stripe-mock for one test and returns its API base (see
// stripetest.Mock).
func StripeMock(tb testing.TB) string { return stripetest.Mock(tb) }
