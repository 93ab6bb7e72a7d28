package rbac_test

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/rbac"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		granted []string
		need    string
		want    bool
	}{
		{[]string{"*"}, "model:write", true},
		{[]string{"inference:execute"}, "inference:execute", true},
		{[]string{"inference:execute"}, "model:read", false},
		{[]string{"model:*"}, "model:write", true},
		{[]string{"model:*"}, "modelx:write", false},
		{[]string{"model"}, "model:read", false},
		{nil, "inference:execute", false},
		{[]string{""}, "", true},
	} {
		if got := rbac.Allowed(c.granted, c.need); got != c.want {
			t.Errorf("Allowed(%v, %q) = %v, want %v", c.granted, c.need, got, c.want)
		}
	}
}

func FuzzAllowed(f *testing.F) {
	f.Add("model:*", "model:read")
	f.Add("*", "x")
	f.Fuzz(func(t *testing.T, granted, need string) {
		got := rbac.Allowed([]string{granted}, need)
		if granted != "*" && granted != need && got {
			// Only a "p:*" grant may allow something else, and only under p:.
			p, ok := cutStar(granted)
			if !ok || len(need) <= len(p) || need[:len(p)+1] != p+":" {
				t.Fatalf("Allowed(%q, %q) = true", granted, need)
			}
		}
	})
}

func cutStar(s string) (string, bool) {
	if len(s) >= 2 && s[len(s)-2:] == ":*" {
		return s[:len(s)-2], true
	}
	return "", false
}
