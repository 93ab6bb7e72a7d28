package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// argon2id parameters from ASVS 5.0 (OWASP): 19 MiB, 2 passes, 1 lane.
const (
	argonMemory  = 19456
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length limits: at least 8 characters, and long passphrases
// allowed (ASVS asks for at least 64); the upper bound only caps the work.
const (
	minPassword = 8
	maxPassword = 256
)

func checkPassword(pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < minPassword || len(pw) > maxPassword {
		return sluice.Invalid("password", sluice.CodeInvalidValue,
			"The password must be %d to %d characters long.", minPassword, maxPassword)
	}
	return nil
}

// argonCost is the memory (KiB) and passes new hashes use.
type argonCost struct{ memory, time uint32 }

// newHashCost is what hashPassword uses: the constants above. A variable
// only so the package's tests can hash cheaply (cheap_test.go: three
// quarters of their CPU was argon2); verifyPassword reads the cost from
// the stored hash, so it checks either, and TestPasswordHashASVS checks
// the production cost itself.
var newHashCost = argonCost{argonMemory, argonTime}

// hashPassword returns the PHC string of an argon2id hash.
func hashPassword(pw string) (string, error) {
	return hashPasswordCost(pw, newHashCost)
}

func hashPasswordCost(pw string, c argonCost) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	k := argon2.IDKey([]byte(pw), salt, c.time, c.memory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, c.memory, c.time, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(k)), nil
}

// dummyHash is verified against when the account does not exist, so a
// login takes as long for an unknown email as for a wrong password.
var dummyHash, _ = hashPassword("sluice-dummy-password")

// verifyPassword checks pw against a PHC argon2id string in constant time.
func verifyPassword(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 10 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
