// Package testenv gives tests the real services they run against: a
// PostgreSQL schema per test (TEST_DATABASE_URL), Redis (TEST_REDIS_URL), and
// the llm-d-inference-sim binary (SLUICE_SIM, or bin/vllm-sim).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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

// StripeMock starts stripe-mock (SLUICE_STRIPE_MOCK, or bin/stripe-mock from
// the repository root; `make test` installs it) on free loopback ports for
// one test and returns its API base for STRIPE_API_BASE. stripe-mock keeps
// no state, so a process per test costs half a second and shares nothing.
func StripeMock(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("SLUICE_STRIPE_MOCK")
	if bin == "" {
		bin = repoFile("bin/stripe-mock")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("stripe-mock not installed (make test installs it: make stripe-mock): %v", err)
	}
	httpPort, httpsPort := freePort(tb), freePort(tb)
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:"+httpPort, "-https-addr", "127.0.0.1:"+httpsPort)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
	base := "http://127.0.0.1:" + httpPort
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+httpPort); err == nil {
			c.Close()
			return base
		}
	}
	tb.Fatal("stripe-mock did not start")
	return ""
}

// repoFile finds path relative to the repository root (the directory with
// go.mod that holds the shared/ tree), from a test's package directory.
func repoFile(path string) string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "shared")); err == nil {
				return filepath.Join(d, path)
			}
		}
		if filepath.Dir(d) == d {
			return path
		}
	}
}

func freePort(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
