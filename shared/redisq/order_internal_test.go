package redisq

import (
	"fmt"
	"testing"
)

// TestClaimOrderClasses: the batch class is last but on its own turn, and
// the aging turn reverses only the interactive classes.
func TestClaimOrderClasses(t *testing.T) {
	for _, c := range []struct {
		o    ClaimOrder
		want string
	}{
		{ClaimOrder{}, "[0 1 2 3]"},
		{ClaimOrder{LowestFirst: true}, "[3 2 1 0]"},
		{ClaimOrder{Bulk: true}, "[0 1 2 3]"},
		{ClaimOrder{Bulk: true, LowestFirst: true}, "[2 1 0 3]"},
		{ClaimOrder{Bulk: true, BulkFirst: true}, "[3 0 1 2]"},
	} {
		if got := fmt.Sprint(c.o.classes(4)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.o, got, c.want)
		}
	}
	if at := bulkAt(ClaimOrder{Bulk: true, BulkFirst: true}.classes(4), 4, 2); at != 0 {
		t.Errorf("bulkAt = %d", at)
	}
}
