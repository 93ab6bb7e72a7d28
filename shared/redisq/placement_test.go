package redisq_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// placeJob enqueues a chat job of user whose prompt is system+user text,
// stamped as the API stamps it under cfg.
func placeJob(t *testing.T, b *bundle, cfg *config.Config, user, system string) *sluice.Job {
	t.Helper()
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat, Priority: 1,
		Body: []byte(`{"messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"hi"}]}`)}
	prefixcache.Stamp(cfg, j)
	if len(j.Prefix) == 0 {
		t.Fatal("prompt too short to place")
	}
	if err := b.q.Enqueue(context.Background(), j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return j
}

// claimOn claims up to n jobs for worker consumer whose endpoints have the
// given free slots.
func claimOn(t *testing.T, b *bundle, consumer string, spill time.Duration, n int64, eps ...redisq.EndpointSlots) []redisq.Entry {
	t.Helper()
	p := &redisq.Placement{Endpoints: eps, SpillAfter: spill, TTL: time.Minute, MaxEntries: 1000, Window: 64}
	es, _, err := b.q.ClaimShare(context.Background(), group, consumer, b.model, 2, n, redisq.ClaimOrder{Place: p}, -1)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func placeConfig(t *testing.T, share bool) *config.Config {
	t.Helper()
	yml := "inference: {prefix_cache: {block_chars: 64}}\n"
	if share {
		yml = "inference: {prefix_cache: {block_chars: 64, share_across_accounts: true}}\n"
	}
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.KeyPepper = strings.Repeat("p", 32)
	return cfg
}

var (
	promptA = strings.Repeat("You are a terse assistant for invoices. ", 8)
	promptB = strings.Repeat("You translate technical English to Dutch. ", 8)
)

// TestPlacementFollowsPrefix: two workers, one endpoint each. The first
// job of a prefix goes to whichever worker claims it and pins the prefix
// there; a later job of that prefix is left alone by the other worker and
// taken by the owner, onto the same endpoint; a job of another prefix goes
// to whoever is free.
func TestPlacementFollowsPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	cfg := placeConfig(t, false)
	spill := time.Hour // never spills within this test
	placeJob(t, b, cfg, "u1", promptA)
	es := claimOn(t, b, "w1", spill, 4, redisq.EndpointSlots{ID: "e1", Free: 4})
	if len(es) != 1 || es[0].Endpoint != "e1" {
		t.Fatalf("first claim: %+v", es)
	}
	second := placeJob(t, b, cfg, "u1", promptA)
	if es := claimOn(t, b, "w2", spill, 4, redisq.EndpointSlots{ID: "e2", Free: 4}); len(es) != 0 {
		t.Fatalf("other worker took a job whose prefix is on e1: %+v", es)
	}
	other := placeJob(t, b, cfg, "u1", promptB)
	es = claimOn(t, b, "w2", spill, 4, redisq.EndpointSlots{ID: "e2", Free: 4})
	if len(es) != 1 || es[0].JobID != other.ID || es[0].Endpoint != "e2" {
		t.Fatalf("w2 should take only the new prefix: %+v", es)
	}
	es = claimOn(t, b, "w1", spill, 4, redisq.EndpointSlots{ID: "e1", Free: 4})
	if len(es) != 1 || es[0].JobID != second.ID || es[0].Endpoint != "e1" {
		t.Fatalf("owner should take its prefix's job onto e1: %+v", es)
	}
}

// TestPlacementSpills: a job whose endpoint is full (its worker offers no
// slot there) is taken by another worker once it has waited spill_after,
// so a hot prefix spreads and nothing starves; and the claim keeps fair
// order among the jobs it may take.
func TestPlacementSpills(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	cfg := placeConfig(t, false)
	spill := 20 * time.Millisecond
	placeJob(t, b, cfg, "u1", promptA)
	if es := claimOn(t, b, "w1", time.Hour, 1, redisq.EndpointSlots{ID: "e1", Free: 1}); len(es) != 1 {
		t.Fatalf("first claim: %+v", es)
	}
	hot := placeJob(t, b, cfg, "u1", promptA)
	// Redis's clock decides the wait; sleeping past the bound makes it certain.
	time.Sleep(3 * spill)
	es := claimOn(t, b, "w2", spill, 4, redisq.EndpointSlots{ID: "e2", Free: 4})
	if len(es) != 1 || es[0].JobID != hot.ID || es[0].Endpoint != "e2" {
		t.Fatalf("a job past spill_after should spread to e2: %+v", es)
	}
}

// TestPlacementIsolatesAccounts: two accounts sending the same prompt get
// different salts and chains, so the second is placed on its own (not
// drawn to the first's endpoint); with the cache shared across accounts
// they get no salt, the same chain, and the same endpoint.
func TestPlacementIsolatesAccounts(t *testing.T) {
	t.Parallel()
	for _, share := range []bool{false, true} {
		b := setup(t, redisq.Options{})
		cfg := placeConfig(t, share)
		j1 := placeJob(t, b, cfg, "acct1", promptA)
		if es := claimOn(t, b, "w1", time.Hour, 4, redisq.EndpointSlots{ID: "e1", Free: 4}); len(es) != 1 || es[0].Endpoint != "e1" {
			t.Fatalf("share=%v: first claim %+v", share, es)
		}
		j2 := placeJob(t, b, cfg, "acct2", promptA)
		es := claimOn(t, b, "w2", time.Hour, 4, redisq.EndpointSlots{ID: "e2", Free: 4})
		if share {
			if j1.CacheSalt != "" || j2.CacheSalt != "" || j1.Prefix[0] != j2.Prefix[0] {
				t.Fatalf("shared: salts %q %q, chains %v %v", j1.CacheSalt, j2.CacheSalt, j1.Prefix, j2.Prefix)
			}
			if len(es) != 0 {
				t.Fatalf("shared: acct2's job should be left for e1, where the prefix is: %+v", es)
			}
			es = claimOn(t, b, "w1", time.Hour, 4, redisq.EndpointSlots{ID: "e1", Free: 4})
			if len(es) != 1 || es[0].Endpoint != "e1" {
				t.Fatalf("shared: acct2's job should run on e1: %+v", es)
			}
			continue
		}
		if j1.CacheSalt == "" || j1.CacheSalt == j2.CacheSalt || j1.Prefix[0] == j2.Prefix[0] {
			t.Fatalf("isolated: salts %q %q, chains %v %v", j1.CacheSalt, j2.CacheSalt, j1.Prefix, j2.Prefix)
		}
		if len(es) != 1 || es[0].Endpoint != "e2" {
			t.Fatalf("isolated: acct2's job is placed on its own, e2 free: %+v", es)
		}
	}
}

// TestPlacementKeepsFairOrder: with placement on, jobs without a prefix
// (or whose prefix is free) are claimed in the fair queue's order: users
// take turns exactly as without placement.
func TestPlacementKeepsFairOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	var want []string
	for range 3 { // u1 floods first, u2 arrives after
		j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u1", Model: b.model, Endpoint: sluice.EndpointChat, Priority: 1, Body: []byte(`{}`)}
		if err := b.q.Enqueue(context.Background(), j, time.Minute); err != nil {
			t.Fatal(err)
		}
		want = append(want, j.ID)
	}
	j := &sluice.Job{ID: rkey.NewJobID(b.model), UserID: "u2", Model: b.model, Endpoint: sluice.EndpointChat, Priority: 1, Body: []byte(`{}`)}
	if err := b.q.Enqueue(context.Background(), j, time.Minute); err != nil {
		t.Fatal(err)
	}
	// u2 starts at the class clock, level with u1's first (a tie, in id
	// order): both go before u1's second and third.
	es := claimOn(t, b, "w1", time.Hour, 4, redisq.EndpointSlots{ID: "e1", Free: 4})
	var got []string
	for _, e := range es {
		got = append(got, e.JobID)
	}
	first := map[string]bool{}
	for _, id := range got[:min(2, len(got))] {
		first[id] = true
	}
	if len(got) != 4 || !first[want[0]] || !first[j.ID] || got[2] != want[1] || got[3] != want[2] {
		t.Fatalf("order %v: u1's %v, u2's %s", got, want, j.ID)
	}
}

// TestPlacementSpreadsNewPrefixes: a prefix seen first goes to the freest
// engine of any worker: a worker whose engines are fuller than another
// worker's (as that worker's last claim reported) leaves it alone.
func TestPlacementSpreadsNewPrefixes(t *testing.T) {
	t.Parallel()
	b := setup(t, redisq.Options{})
	cfg := placeConfig(t, false)
	if es := claimOn(t, b, "w2", time.Hour, 4, redisq.EndpointSlots{ID: "e2", Free: 4}); len(es) != 0 {
		t.Fatalf("nothing queued yet: %+v", es)
	}
	j := placeJob(t, b, cfg, "u1", promptA)
	if es := claimOn(t, b, "w1", time.Hour, 1, redisq.EndpointSlots{ID: "e1", Free: 1}); len(es) != 0 {
		t.Fatalf("w1 (1 free) took a new prefix while w2 has 4 free: %+v", es)
	}
	es := claimOn(t, b, "w2", time.Hour, 4, redisq.EndpointSlots{ID: "e2", Free: 4})
	if len(es) != 1 || es[0].JobID != j.ID || es[0].Endpoint != "e2" {
		t.Fatalf("w2 should take the new prefix: %+v", es)
	}
}
