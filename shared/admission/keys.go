package admission

// Every Redis key admission uses is built here. A user's keys share the hash
// tag {u:USER}, so each admission and settlement script touches one Redis
// Cluster slot; the job side ({m:TAG}) lives in shared/redisq/keys.go.

const keyPrefix = "sluice:"

func userKey(userID, name string) string { return keyPrefix + "{u:" + userID + "}:" + name }

// userKeys are one user's admission keys, in the order admit.lua takes them.
type userKeys struct {
	funds, holds, holdExp, reqLog, tokLog, tokAmt, lease string
	settleLock                                           string
}

func keysOf(userID string) userKeys {
	return userKeys{
		funds:   userKey(userID, "funds"),   // hash: credit, inc_used, ov_used, *_held, per, init, g:<grant id>
		holds:   userKey(userID, "holds"),   // hash: job id → its hold
		holdExp: userKey(userID, "holdexp"), // zset: job id by the time its hold lapses
		reqLog:  userKey(userID, "rpm"),     // zset: job id by admission time (rolling minute)
		tokLog:  userKey(userID, "tpm"),     // zset: job id by admission time
		tokAmt:  userKey(userID, "tpmv"),    // hash: job id → tokens counted, _sum
		lease:   userKey(userID, "lease"),   // zset: job id by lease expiry
		// string: the token of the settler settling one of the user's
		// jobs whose hold is gone (settle.go, settleUnheld)
		settleLock: userKey(userID, "settlelock"),
	}
}

func (k userKeys) admit() []string {
	return []string{k.funds, k.holds, k.holdExp, k.reqLog, k.tokLog, k.tokAmt, k.lease}
}

func (k userKeys) settle() []string {
	return []string{k.funds, k.holds, k.holdExp, k.tokAmt, k.lease}
}

// settleGroup is the consumer group of the settle streams.
const settleGroup = "settle"
