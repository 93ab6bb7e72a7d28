package auth

// The package's tests hash passwords at argon2id's minimum cost: sign-ups,
// logins and password changes by the hundred, each at the production cost
// (19 MiB, 2 passes), were three quarters of the tests' CPU. The stored
// hashes name their cost, so verifyPassword checks them as it checks
// production ones; TestPasswordHashASVS covers the production cost, and the
// dummy hash an unknown email is checked against is hashed at the same
// cost as the tests' accounts, as in production.
func init() {
	newHashCost = argonCost{memory: 8, time: 1}
	dummyHash, _ = hashPassword("sluice-dummy-password")
}
