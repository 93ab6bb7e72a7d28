// Package rbac checks permissions from the config's auth.rbac block.
package rbac

import "strings"

// Allowed reports whether granted covers need. "*" grants everything and
// "model:*" every model action; nothing else is a wildcard.
func Allowed(granted []string, need string) bool {
	for _, g := range granted {
		if g == "*" || g == need {
			return true
		}
		if prefix, ok := strings.CutSuffix(g, ":*"); ok && strings.HasPrefix(need, prefix+":") {
			return true
		}
	}
	return false
}

// AnyAllowed reports whether granted covers at least one of needs.
func AnyAllowed(granted []string, needs ...string) bool {
	for _, n := range needs {
		if Allowed(granted, n) {
			return true
		}
	}
	return false
}
