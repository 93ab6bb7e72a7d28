package redisq

// Identity keys. Abuse counters of one user share the {u:ID} tag; counters
// keyed by address or email carry their own tag, one key per script call.

// AuthEvictChannel carries credential revocations to every instance's
// verifier cache.
const AuthEvictChannel = keyPrefix + "authn:evict"

// LimitKey is a fixed-window abuse counter: kind names the limit (login,
// signup, keys, mfa), subject what it counts (an address, an email hash, a
// user id).
func LimitKey(kind, subject string) string {
	return keyPrefix + "{l:" + kind + ":" + subject + "}:n"
}

// RevokedSessionsKey is the sorted set of ended logins and users whose
// sessions ended: members "s:<session id>" and "u:<user id>", scored by the
// revocation time in Unix milliseconds. Entries older than an access
// token's lifetime (plus leeway) are pruned, and the key expires with them.
const RevokedSessionsKey = keyPrefix + "authn:revoked"
