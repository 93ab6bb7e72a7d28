package redisq_test

import (
	"fmt"
	"testing"

	"github.com/sluice-ai/sluice/shared/redisq"
)

// TestClaimOrderClasses: the batch class is last but on its own turn, and
// the aging turn reverses only the interactive classes.
func TestClaimOrderClasses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		o    redisq.ClaimOrder
		want string
	}{
		{redisq.ClaimOrder{}, "[0 1 2 3]"},
		{redisq.ClaimOrder{LowestFirst: true}, "[3 2 1 0]"},
		{redisq.ClaimOrder{Bulk: true}, "[0 1 2 3]"},
		{redisq.ClaimOrder{Bulk: true, LowestFirst: true}, "[2 1 0 3]"},
		{redisq.ClaimOrder{Bulk: true, BulkFirst: true}, "[3 0 1 2]"},
	} {
		if got := fmt.Sprint(c.o.Classes(4)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.o, got, c.want)
		}
	}
}
