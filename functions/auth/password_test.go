package auth

import (
	"strings"
	"testing"
)

// TestPasswordHashASVS: a hash at the production cost is ASVS 5.0's
// argon2id (19 MiB, 2 passes, 1 lane) in PHC form, verifies with its
// password and not with another, and a cheaper hash (the tests') verifies
// too, since the cost is read from the stored string.
func TestPasswordHashASVS(t *testing.T) {
	t.Parallel()
	phc, err := hashPasswordCost("correct horse battery", argonCost{argonMemory, argonTime})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("production hash %q: want argon2id v=19 m=19456,t=2,p=1", phc)
	}
	if !verifyPassword(phc, "correct horse battery") {
		t.Fatal("the production hash does not verify with its password")
	}
	if verifyPassword(phc, "correct horse battery!") {
		t.Fatal("the production hash verifies with another password")
	}
	cheap, err := hashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cheap, "$m=8,t=1,p=1$") || !verifyPassword(cheap, "correct horse battery") || verifyPassword(cheap, "x"+"correct horse battery") {
		t.Fatalf("the tests' cheap hash %q does not verify as a stored hash should", cheap)
	}
	// A stored hash whose cost is out of bounds is refused before any work.
	if verifyPassword(strings.Replace(phc, "m=19456", "m=4194304", 1), "correct horse battery") {
		t.Fatal("a hash claiming 4 GiB was verified")
	}
}
