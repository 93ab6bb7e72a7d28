package sluice

import "testing"

func TestIsUUID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"5ba3c5d5-9b8f-49b1-939b-b8a43bd726eb":  true,
		"5BA3C5D5-9B8F-49B1-939B-B8A43BD726EB":  true,
		"5ba3c5d5-9b8f-49b1-939b-b8a43bd726e":   false, // short
		"5ba3c5d5-9b8f-49b1-939b-b8a43bd726eb0": false, // long
		"5ba3c5d5x9b8f-49b1-939b-b8a43bd726eb":  false, // separator
		"zba3c5d5-9b8f-49b1-939b-b8a43bd726eb":  false, // not hex
		"5ba3c5d5-9b8f-49b1-939b-b8a43bd726é":   false, // multi-byte
		"":                                      false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, !want, want)
		}
	}
}
