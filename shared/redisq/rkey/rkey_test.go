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
	got := PerTag([]string{"a", "b", "a"}, 1, UsageKey)
	if want := []string{UsageKey(Tag("a")), UsageKey(Tag("b"))}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("PerTag = %v, want %v", got, want)
	}
	if tags := PerTag([]string{"a", "a"}, 1, nil); len(tags) != 1 || tags[0] != Tag("a") {
		t.Fatalf("tags = %v", tags)
	}
	if tags := PerTag([]string{"a", "a"}, 4, nil); len(tags) != 4 || tags[0] != Tag("a") {
		t.Fatalf("sharded tags = %v", tags)
	}
}

// TestShards: shard 0 keeps the unsharded names, shards are distinct, a
// user's job ids stay in one shard, and every key of a shard's scripts
// hashes to that shard's tag.
func TestShards(t *testing.T) {
	if got := ShardTags("llama", 1); len(got) != 1 || got[0] != Tag("llama") {
		t.Fatalf("ShardTags(1) = %v", got)
	}
	tags := ShardTags("llama", 64)
	seen := map[string]bool{}
	for _, tg := range tags {
		if seen[tg] {
			t.Fatalf("tag %q repeats in %v", tg, tags)
		}
		seen[tg] = true
	}
	if p := ShardTags("llama", 6); strings.Join(p, ",") != strings.Join(tags[:6], ",") {
		t.Fatalf("6 shards %v are not a prefix of 64 %v", p, tags[:6])
	}
	if NewUserJobID("llama", "u1", 1)[:8] != NewJobID("llama")[:8] {
		t.Fatal("one shard changed the job id's tag")
	}
	for _, u := range []string{"u1", "u2", "someone"} {
		tag := JobTag(NewUserJobID("llama", u, 6))
		if tag != tags[UserShard(u, 6)] || JobTag(NewUserJobID("llama", u, 6)) != tag {
			t.Fatalf("user %s: job tag %q, want %q every time", u, tag, tags[UserShard(u, 6)])
		}
		id := NewUserJobID("llama", u, 6)
		for _, k := range []string{JobKey(id), ResultKey(id), ShardStreamKey(tag, "llama", 1), ShardFairKey(tag, "llama", 1),
			ShardVClockKey(tag, "llama", 1), ShardBellKey(tag, "llama"), ShardDeadKey(tag, "llama"), SettleKey(tag)} {
			if s := slot(t, k); s != "m:"+tag {
				t.Errorf("%q hashes on %q, not the shard's tag %q", k, s, tag)
			}
		}
	}
	if StreamKey("llama", 2) != ShardStreamKey(Tag("llama"), "llama", 2) || DeadKey("llama") != ShardDeadKey(Tag("llama"), "llama") {
		t.Fatal("shard 0's keys differ from the unsharded ones")
	}
}
