package apikey_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/apikey"
)

func TestNewParses(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		k, err := apikey.New()
		if err != nil {
			t.Fatal(err)
		}
		if err := apikey.Parse(k); err != nil {
			t.Fatalf("Parse(%q) = %v", k, err)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	good, _ := apikey.New()
	flip := []byte(good)
	i := len(apikey.Prefix) + 3
	if flip[i] == 'a' {
		flip[i] = 'b'
	} else {
		flip[i] = 'a'
	}
	for name, k := range map[string]string{
		"empty":        "",
		"prefix only":  apikey.Prefix,
		"wrong prefix": "sk-other-" + good[len(apikey.Prefix)-1:],
		"openai style": "sk-" + strings.Repeat("a", 48),
		"one char off": string(flip),
		"too long":     good + "a",
		"too short":    good[:len(good)-1],
		"bad alphabet": good[:len(good)-8] + "!" + good[len(good)-7:],
		"utf8 inside":  good[:len(apikey.Prefix)] + "é" + good[len(apikey.Prefix)+2:],
		"whitespace":   " " + good[1:],
		"huge":         strings.Repeat("x", 1<<16),
	} {
		if err := apikey.Parse(k); err == nil {
			t.Errorf("%s: Parse accepted %q", name, k)
		}
	}
}

func TestHashDependsOnPepper(t *testing.T) {
	t.Parallel()
	k, _ := apikey.New()
	a := apikey.Hash([]byte("pepper-one-0123456789abcdef012345"), k)
	b := apikey.Hash([]byte("pepper-two-0123456789abcdef012345"), k)
	if bytes.Equal(a, b) || len(a) != 32 {
		t.Fatalf("hash must be 32 bytes and depend on the pepper")
	}
	if d := apikey.Display(k); !strings.HasPrefix(k, d) || len(d) != len(apikey.Prefix)+4 {
		t.Fatalf("Display = %q", d)
	}
}

func FuzzParse(f *testing.F) {
	k, _ := apikey.New()
	f.Add(k)
	f.Add("sk-sluice-")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if apikey.Parse(s) == nil {
			// Anything accepted must have the exact shape.
			if len(s) != apikey.Len || !strings.HasPrefix(s, apikey.Prefix) {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
