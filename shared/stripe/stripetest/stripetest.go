// Package stripetest runs stripe-mock, Stripe's stateless API fake, for
// tests. It lives under shared/ so the functions' own tests can use it in
// their shrinkwrapped OpenFaaS build contexts, which carry shared/ only.
package stripetest

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Mock starts stripe-mock (SLUICE_STRIPE_MOCK, or bin/stripe-mock from
// the repository root; `make test` installs it) on free loopback ports for
// one test and returns its API base for STRIPE_API_BASE. stripe-mock keeps
// no state, so a process per test costs half a second and shares nothing.
func Mock(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("SLUICE_STRIPE_MOCK")
	if bin == "" {
		bin = repoFile("bin/stripe-mock")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("stripe-mock not installed (make test installs it: make stripe-mock): %v", err)
	}
	// A free port can be taken by another process before stripe-mock binds
	// it (a loaded make test starts hundreds of servers): stripe-mock then
	// exits, while a dial would reach the other process. So the check is a
	// request only stripe-mock answers, and an exit means new ports.
	for range 3 {
		if base, ok := start(tb, bin); ok {
			return base
		}
	}
	tb.Fatal("stripe-mock exited three times before serving (its ports taken?)")
	return ""
}

// start runs one stripe-mock on free ports and waits until it serves; false
// when it exited first.
func start(tb testing.TB, bin string) (string, bool) {
	tb.Helper()
	httpPort, httpsPort := freePort(tb), freePort(tb)
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:"+httpPort, "-https-addr", "127.0.0.1:"+httpsPort)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()           //nolint:errcheck
	tb.Cleanup(func() { cmd.Process.Kill(); <-exited }) //nolint:errcheck
	base := "http://127.0.0.1:" + httpPort
	deadline := time.Now().Add(60 * time.Second)
	for !isStripeMock(base) {
		if time.Now().After(deadline) {
			tb.Fatal("stripe-mock did not start")
		}
		select {
		case <-exited:
			return "", false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return base, true
}

// isStripeMock: base answers a Stripe list request as stripe-mock does.
func isStripeMock(base string) bool {
	req, _ := http.NewRequest("GET", base+"/v1/customers", nil)
	req.Header.Set("Authorization", "Bearer sk_test_123")
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Object string `json:"object"`
	}
	return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&body) == nil && body.Object == "list"
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
