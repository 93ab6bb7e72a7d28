package redisq

// BellIDs are the bell ids a claim saw, shard 0 first (for the external tests).
func BellIDs(b Bells) []string { return b.ids }
