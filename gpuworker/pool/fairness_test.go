package pool

import "testing"

// TestClaimOrder: the lower interactive classes get the first pick one
// round in agingEvery, the batch class one other round in as many, and
// the batch class is otherwise always last.
func TestClaimOrder(t *testing.T) {
	t.Parallel()
	r := &runner{}
	aging, bulk := 0, 0
	for range 8 * agingEvery {
		o := r.claimOrder()
		if o.LowestFirst {
			aging++
		}
		if o.BulkFirst {
			bulk++
		}
		if o.LowestFirst && o.BulkFirst || !o.Bulk {
			t.Fatalf("order %+v", o)
		}
	}
	if aging != 8 || bulk != 8*agingEvery/bulkEvery {
		t.Fatalf("lower classes first in %d, batch class first in %d of %d rounds, want 8 and %d", aging, bulk, 8*agingEvery, 8*agingEvery/bulkEvery)
	}
}
