package pool

import "testing"

// TestReadOrderAging: highest priority first, lowest first one round in agingEvery.
func TestReadOrderAging(t *testing.T) {
	t.Parallel()
	r := &runner{streams: []string{"p0", "p1", "p2"}}
	lowFirst := 0
	for range 8 * agingEvery {
		o := r.readOrder()
		if o[0] == "p2" {
			lowFirst++
		} else if o[0] != "p0" {
			t.Fatalf("order %v", o)
		}
	}
	if lowFirst != 8 {
		t.Fatalf("lowest priority read first in %d of %d rounds, want 8", lowFirst, 8*agingEvery)
	}
}
