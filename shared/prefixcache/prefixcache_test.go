package prefixcache_test

import (
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func chat(system, user string) []byte {
	return []byte(`{"messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":[{"type":"text","text":"` + user + `"}]}]}`)
}

// TestChainSharesPrefix: prompts share chain hashes exactly as far as
// their blocks agree, and a salt separates otherwise equal chains.
func TestChainSharesPrefix(t *testing.T) {
	t.Parallel()
	sys := strings.Repeat("abcdefgh", 32) // 256 characters: four 64-character blocks
	a := prefixcache.Chain("", sluice.EndpointChat, chat(sys, "question one, long enough to fill a block of its own ....."), 64, 8)
	b := prefixcache.Chain("", sluice.EndpointChat, chat(sys, "another question entirely, also a block or so long ......"), 64, 8)
	if len(a) < 5 || len(b) < 5 {
		t.Fatalf("chains %d %d", len(a), len(b))
	}
	if a[3] != b[3] || a[len(a)-1] == b[len(b)-1] {
		t.Fatalf("shared blocks must hash equal and the differing tail not:\n%v\n%v", a, b)
	}
	s := prefixcache.Chain("salt", sluice.EndpointChat, chat(sys, "question one, long enough to fill a block of its own ....."), 64, 8)
	if s[0] == a[0] {
		t.Fatal("a salt must change every hash")
	}
	if got := prefixcache.Chain("", sluice.EndpointChat, chat("hi", "there"), 64, 8); got != nil {
		t.Fatalf("a prompt under one block is not placed: %v", got)
	}
	if got := prefixcache.Chain("", sluice.EndpointChat, chat(sys, ""), 64, 2); len(got) != 2 {
		t.Fatalf("max blocks: %v", got)
	}
}

// TestSalt: salts differ between accounts and keys, and are stable.
func TestSalt(t *testing.T) {
	t.Parallel()
	k := prefixcache.SaltKey(strings.Repeat("p", 32))
	if prefixcache.Salt(k, "a") == prefixcache.Salt(k, "b") || prefixcache.Salt(k, "a") != prefixcache.Salt(k, "a") ||
		prefixcache.Salt(k, "a") == prefixcache.Salt(prefixcache.SaltKey(strings.Repeat("q", 32)), "a") {
		t.Fatal("salt must be per account, per key, and stable")
	}
}

// FuzzRender: any body renders without panicking, and a chain is always
// whole blocks of hashes of HashLen.
func FuzzRender(f *testing.F) {
	f.Add(sluice.EndpointChat, string(chat(strings.Repeat("x", 100), "y")))
	f.Add(sluice.EndpointCompletion, `{"prompt":["a",[1,2,3]]}`)
	f.Add(sluice.EndpointResponses, `{"instructions":"be brief","input":[{"role":"user","content":"hi"}]}`)
	f.Add(sluice.EndpointChat, `{"messages":[{"content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`)
	f.Fuzz(func(t *testing.T, endpoint, body string) {
		text := prefixcache.Render(endpoint, []byte(body))
		c := prefixcache.Chain("s", endpoint, []byte(body), 16, 4)
		if len(c) != min(len(text)/16, 4) {
			t.Fatalf("%d hashes for %d characters", len(c), len(text))
		}
		for _, h := range c {
			if len(h) != prefixcache.HashLen {
				t.Fatalf("hash %q", h)
			}
		}
	})
}
