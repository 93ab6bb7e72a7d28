package main

import (
	"fmt"
	"strings"
	"testing"
)

// TestLimitsCLI: an operator's per-user override reaches admission in the
// real `sluice dev` (store → verifier's principal → admit script): a user
// of a 100 rpm tier set to 2 rpm gets exactly two, then 429.
func TestLimitsCLI(t *testing.T) {
	t.Parallel()
	s := startStack(t, "tiers:\n  free:\n    rate_limit: 100\n    included_credits: 100000\n")
	email := "limits-" + s.models[0] + "@example.com"
	key := s.newKey(t, email)
	cli := func(args ...string) string { return s.cli(t, args...) }
	out := cli("limits", "set", "--email", email, "--rpm", "2", "--overage-cap", "7.50")
	if !strings.Contains(out, "requests/min 2 (override)") || !strings.Contains(out, "tokens/min unlimited (tier)") {
		t.Fatalf("limits set printed %q", out)
	}
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, s.models[0])
	var codes []int
	for range 3 {
		resp := s.chat(t, key, body)
		codes = append(codes, resp.StatusCode)
		if resp.Header.Get("x-ratelimit-limit-requests") != "2" {
			t.Fatalf("x-ratelimit-limit-requests = %q, want 2", resp.Header.Get("x-ratelimit-limit-requests"))
		}
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Fatalf("statuses = %v, want [200 200 429]", codes)
	}
	if out := cli("limits", "show", "--email", email); !strings.Contains(out, "requests/min 2 (override)") {
		t.Fatalf("limits show printed %q", out)
	}
	// credits shares the --email command plumbing.
	if out := cli("credits", "grant", "--email", email, "--amount", "1.25"); !strings.Contains(out, "granted $1.25") ||
		!strings.Contains(out, "ledger: credit $1.25") {
		t.Fatalf("credits grant printed %q", out)
	}
}
