// Package authsuite holds the auth function's end-to-end tests: the attack
// suite, the session, key, deletion and pepper-rotation flows, and the
// two-instance revocation figure. They run the real router (auth and submit)
// on real PostgreSQL and Redis, so they live outside functions/auth, whose
// image ships only the function and shared/.
package authsuite
