package rkey

import (
	"strings"
	"testing"
)

// slot is the part of a key Redis Cluster hashes: the first {…}.
func slot(t *testing.T, key string) string {
	t.Helper()
	i := strings.IndexByte(key, '{')
	j := strings.IndexByte(key[i+1:], '}')
	if i < 0 || j <= 0 {
		t.Fatalf("%q has no hash tag", key)
	}
	return key[i+1 : i+1+j]
}

// TestScriptKeysShareASlot: every key one script takes hashes to one slot.
func TestScriptKeysShareASlot(t *testing.T) {
	id := NewJobID("llama")
	if JobTag(id) != Tag("llama") {
		t.Fatalf("JobTag(%q) = %q, want %q", id, JobTag(id), Tag("llama"))
	}
	job := []string{JobKey(id), ResultKey(id), StreamKey("llama", 0), FairKey("llama", 1), VClockKey("llama", 2),
		BellKey("llama"), DeadKey("llama"), UsageKey(Tag("llama")), SettleKey(Tag("llama")), HooksKey(Tag("llama")),
		HooksDueKey(Tag("llama")), HookTimeKey(Tag("llama"), "u1"), EndpointsKey("llama"), EndpointsSeenKey("llama")}
	for _, k := range job {
		if s := slot(t, k); s != "m:"+Tag("llama") {
			t.Errorf("%q hashes on %q, not the model's tag", k, s)
		}
	}
	u := User("u1")
	for _, k := range append(u.Admit(), u.Settle()...) {
		if s := slot(t, k); s != "u:u1" {
			t.Errorf("%q hashes on %q, not the user's tag", k, s)
		}
	}
	if s := slot(t, CacheKey("u1", "llama", "/v1/chat/completions", []byte("{}"))); s != "u:u1" {
		t.Errorf("cache key hashes on %q", s)
	}
}

// TestJobKeyRoundTrip: a job hash found by SCAN names its job.
func TestJobKeyRoundTrip(t *testing.T) {
	id := NewJobID("m")
	pat := JobKeyPattern(JobTag(id))
	key := JobKey(id)
	if !strings.HasPrefix(key, strings.TrimSuffix(pat, "*")) {
		t.Fatalf("%q does not match %q", key, pat)
	}
	if got := JobIDOfKey(key); got != id {
		t.Fatalf("JobIDOfKey(%q) = %q, want %q", key, got, id)
	}
	if JobTag("job_zz") != "" || JobTag("nope") != "" {
		t.Fatal("malformed ids have a tag")
	}
}

func TestPerTag(t *testing.T) {
	got := PerTag([]string{"a", "b", "a"}, UsageKey)
	if want := []string{UsageKey(Tag("a")), UsageKey(Tag("b"))}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("PerTag = %v, want %v", got, want)
	}
	if tags := PerTag([]string{"a", "a"}, nil); len(tags) != 1 || tags[0] != Tag("a") {
		t.Fatalf("tags = %v", tags)
	}
}
