package pool

import "testing"

// TestAgingTurn: the lower classes get the first pick one round in agingEvery.
func TestAgingTurn(t *testing.T) {
	t.Parallel()
	r := &runner{}
	turns := 0
	for range 8 * agingEvery {
		if r.agingTurn() {
			turns++
		}
	}
	if turns != 8 {
		t.Fatalf("lower classes first in %d of %d rounds, want 8", turns, 8*agingEvery)
	}
}
