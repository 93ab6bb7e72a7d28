// Package rkey builds every Redis key, channel and consumer-group name Sluice
// uses; nothing else may (see the architecture test). It is a leaf: stdlib only.
package rkey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"strconv"
	"strings"
)

// Every Redis key and channel name Sluice uses is built in this file.
//
// Keys of one model share the hash tag {m:XXXX} (XXXX: 4 hex digits of the
// model name's SHA-256), so each Lua script touches one Redis Cluster slot.
// A job id carries its model's tag, so a job's keys can be found from its id
// alone: job_<XXXX><random>.
//
// A model's queue may be split over several shards (jobs.shards), each with
// its own tag and so its own slot, which a cluster spreads over its masters.
// Shard 0's tag is the model's Tag, so an unsharded queue (jobs.shards=1)
// has exactly the key names it had before sharding existed. A job id carries
// its shard's tag.

const keyPrefix = "sluice:"

// Consumer groups.
const (
	GroupWorkers = "workers" // job streams
	GroupUsage   = "usage"   // usage streams
	GroupHooks   = "hooks"   // webhook streams
)

// CancelChannel carries the ids of running jobs to abort.
const CancelChannel = keyPrefix + "cancel"

// Tag is the hash-tag code of a model.
func Tag(model string) string {
	s := sha256.Sum256([]byte(model))
	return hex.EncodeToString(s[:2])
}

func tagged(tag string) string { return keyPrefix + "{m:" + tag + "}:" }

// ShardTags returns the tags of a model's shards, shard 0 first: Tag(model),
// then for shard i the tag of model+"\x00"+i (salted again should it repeat
// an earlier shard's tag, so the shards are always distinct slots). The list
// for n shards is a prefix of the list for more.
func ShardTags(model string, shards int) []string {
	out := []string{Tag(model)}
	seen := map[string]bool{out[0]: true}
	for i := 1; len(out) < shards; i++ {
		t := Tag(model + "\x00" + strconv.Itoa(i))
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// UserShard is the shard of a model's queue that holds a user's jobs: a hash
// of the user id, so one user's jobs stay in one shard, in their order.
func UserShard(userID string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(userID))
	return int(h.Sum32() % uint32(shards))
}

// NewJobID returns a fresh job id for model, in its shard 0.
func NewJobID(model string) string { return newJobID(Tag(model)) }

// NewUserJobID returns a fresh job id for a user's job of model, in the
// user's shard of the model's queue split into shards.
func NewUserJobID(model, userID string, shards int) string {
	if shards <= 1 {
		return NewJobID(model)
	}
	return newJobID(ShardTags(model, shards)[UserShard(userID, shards)])
}

func newJobID(tag string) string {
	b := make([]byte, 12)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return "job_" + tag + hex.EncodeToString(b)
}

// JobTag extracts the tag from a job id, or "" if the id is malformed.
func JobTag(id string) string {
	rest, ok := strings.CutPrefix(id, "job_")
	if !ok || len(rest) != 4+24 {
		return ""
	}
	if _, err := hex.DecodeString(rest); err != nil {
		return ""
	}
	return rest[:4]
}

// StreamKey is the job stream of a model and priority class (shard 0).
func StreamKey(model string, prio int) string { return ShardStreamKey(Tag(model), model, prio) }

// ShardStreamKey is the job stream of a model's shard and priority class.
func ShardStreamKey(tag, model string, prio int) string {
	return tagged(tag) + "q:" + model + ":" + strconv.Itoa(prio)
}

// FairKey is the sorted set of a model and priority class's queued jobs
// (shard 0), scored by per-user virtual time so users of one class take turns.
func FairKey(model string, prio int) string { return ShardFairKey(Tag(model), model, prio) }

// ShardFairKey is FairKey of a model's shard.
func ShardFairKey(tag, model string, prio int) string {
	return tagged(tag) + "fq:" + model + ":" + strconv.Itoa(prio)
}

// VClockKey is the hash of per-user virtual times of a model and priority
// class (shard 0); field "_g" is the class's clock (the score of the last
// job claimed).
func VClockKey(model string, prio int) string { return ShardVClockKey(Tag(model), model, prio) }

// ShardVClockKey is VClockKey of a model's shard.
func ShardVClockKey(tag, model string, prio int) string {
	return tagged(tag) + "vt:" + model + ":" + strconv.Itoa(prio)
}

// BellKey is a one-entry stream each enqueue rings (shard 0), so idle
// workers wait on it with XREAD BLOCK instead of polling.
func BellKey(model string) string { return ShardBellKey(Tag(model), model) }

// ShardBellKey is the bell of a model's shard.
func ShardBellKey(tag, model string) string { return tagged(tag) + "bell:" + model }

// DeadKey is the dead-letter stream of a model (shard 0).
func DeadKey(model string) string { return ShardDeadKey(Tag(model), model) }

// ShardDeadKey is the dead-letter stream of a model's shard.
func ShardDeadKey(tag, model string) string { return tagged(tag) + "dead:" + model }

// JobKey is the hash holding a job's state.
func JobKey(id string) string { return tagged(JobTag(id)) + "job:" + id }

// PlacementKey is the hash of a model shard's queued jobs that carry a
// prompt-prefix chain (job id → "created|chain"), which a prefix-aware
// claim reads for the jobs at the head of the fair queue.
func PlacementKey(tag, model string) string { return tagged(tag) + "pfxq:" + model }

// AffinityKey is the hash of a model shard's prefix→endpoint placement
// entries (a prompt-prefix block hash to the id of the endpoint that ran a
// job with that prefix last); AffinityLRUKey orders them by last use, so
// the claim drops the stale and the least recently used.
func AffinityKey(tag, model string) string { return tagged(tag) + "pfx:" + model }

// AffinityLRUKey is the zset of AffinityKey's entries by last use (ms).
func AffinityLRUKey(tag, model string) string { return tagged(tag) + "pfxlru:" + model }

// EndpointSlotsKey is the hash of a model shard's endpoints' free slots as
// their workers' last claims left them ("free|ms" by endpoint id): a
// prefix seen first goes to the freest engine of any worker.
func EndpointSlotsKey(tag, model string) string { return tagged(tag) + "epslots:" + model }

// ResultKey is the stream of a job's result events.
func ResultKey(id string) string { return tagged(JobTag(id)) + "res:" + id }

// ResultChannel is the shard channel (SPUBLISH) on which every append to a
// job's result stream is announced, with the stream's key as the message:
// a process's waiters share one subscription per tag instead of each
// blocking a connection on its own stream (redisq's waiter hub). It carries
// the job's tag, so it lives in the slot of the scripts that publish on it.
func ResultChannel(id string) string { return tagged(JobTag(id)) + "resn" }

// UsageKey is the usage-event stream of a tag.
func UsageKey(tag string) string { return tagged(tag) + "usage" }

// SettleKey is the stream of a tag's ended jobs whose reservations await
// settlement (shared/admission).
func SettleKey(tag string) string { return tagged(tag) + "settle" }

// HooksKey is the webhook-delivery stream of a tag.
func HooksKey(tag string) string { return tagged(tag) + "hooks" }

// HooksDueKey is the zset of a tag's put-off webhook deliveries (job id by
// when it is due), moved back into HooksKey when due.
func HooksDueKey(tag string) string { return tagged(tag) + "hooks:due" }

// HookTimeKey counts the milliseconds one user's webhook deliveries took in
// the current budget window.
func HookTimeKey(tag, userID string) string { return tagged(tag) + "hooktime:" + userID }

// IdemKey maps a user's Idempotency-Key to the job it created.
func IdemKey(userID, key string) string {
	s := sha256.Sum256([]byte(key))
	return keyPrefix + "{u:" + userID + "}:idem:" + hex.EncodeToString(s[:16])
}

// WorkersKey is the sorted set of live workers (score: last heartbeat, ms).
const WorkersKey = keyPrefix + "workers"

// EndpointsKey is the hash of a model's engine endpoints as each worker last
// published them (field: worker name, value: JSON).
func EndpointsKey(model string) string { return tagged(Tag(model)) + "eps:" + model }

// EndpointsSeenKey is the sorted set of the workers that published a model's
// endpoints (score: when the entry lapses, ms by Redis's clock).
func EndpointsSeenKey(model string) string { return tagged(Tag(model)) + "eps-seen:" + model }

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

// A user's admission keys share the hash tag {u:USER}, so each admission and
// settlement script touches one Redis Cluster slot.
func userKey(userID, name string) string { return keyPrefix + "{u:" + userID + "}:" + name }

// UserKeys are one user's admission keys.
type UserKeys struct {
	Funds, Holds, HoldExp, ReqLog, TokLog, TokAmt, Lease string
	// SettleLock holds the token of the settler settling one of the
	// user's jobs whose hold is gone (admission's settleUnheld).
	SettleLock string
}

// User returns a user's admission keys.
func User(userID string) UserKeys {
	return UserKeys{
		Funds:      userKey(userID, "funds"),   // hash: credit, inc_used, ov_used, *_held, per, init, g:<grant id>
		Holds:      userKey(userID, "holds"),   // hash: job id → its hold
		HoldExp:    userKey(userID, "holdexp"), // zset: job id by the time its hold lapses
		ReqLog:     userKey(userID, "rpm"),     // zset: job id by admission time (rolling minute)
		TokLog:     userKey(userID, "tpm"),     // zset: job id by admission time
		TokAmt:     userKey(userID, "tpmv"),    // hash: job id → tokens counted, _sum
		Lease:      userKey(userID, "lease"),   // zset: job id by lease expiry
		SettleLock: userKey(userID, "settlelock"),
	}
}

// Admit is the keys admit.lua takes, in its order.
func (k UserKeys) Admit() []string {
	return []string{k.Funds, k.Holds, k.HoldExp, k.ReqLog, k.TokLog, k.TokAmt, k.Lease}
}

// Settle is the keys settle.lua takes, in its order.
func (k UserKeys) Settle() []string {
	return []string{k.Funds, k.Holds, k.HoldExp, k.TokAmt, k.Lease}
}

// GroupSettle is the consumer group of the settle streams.
const GroupSettle = "settle"

// CacheKey is a user's exact-match response-cache entry: a hash of the model,
// the endpoint and the request body as sent upstream.
func CacheKey(userID, model, endpoint string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(model + "\x00" + endpoint + "\x00"))
	h.Write(body)
	return userKey(userID, "cache:"+hex.EncodeToString(h.Sum(nil)))
}

// JobKeyPattern matches every job hash of a tag (SCAN MATCH).
func JobKeyPattern(tag string) string { return tagged(tag) + "job:*" }

// JobIDOfKey is the job id a job hash key names.
func JobIDOfKey(key string) string {
	_, id, _ := strings.Cut(key, "}:job:")
	return id
}

// ParkedUsageKey is the dead-letter stream of a usage stream: events the
// database refused, kept for an operator.
func ParkedUsageKey(usageStream string) string { return usageStream + ":dead" }

// CachePattern matches every response-cache entry of a user (SCAN MATCH).
func CachePattern(userID string) string { return userKey(userID, "cache:*") }

// PerTag returns key(tag) once for each distinct tag of the shards of
// models (each split into shards), in the models' order: the per-tag streams
// (usage, settle, hooks) of a set of models. key may be nil for the tags
// themselves.
func PerTag(models []string, shards int, key func(tag string) string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range models {
		for _, t := range ShardTags(m, shards) {
			if seen[t] {
				continue
			}
			seen[t] = true
			if key != nil {
				t = key(t)
			}
			out = append(out, t)
		}
	}
	return out
}

// BatchLineJobID is the job id of a batch's line: in the user's shard of
// the model, and the same for the same batch and line, so a driver that
// enqueues a line again after a crash finds the job already there.
func BatchLineJobID(model, userID string, shards int, batchID string, line int) string {
	tag := Tag(model)
	if shards > 1 {
		tag = ShardTags(model, shards)[UserShard(userID, shards)]
	}
	h := sha256.Sum256([]byte(batchID + ":" + strconv.Itoa(line)))
	return "job_" + tag + hex.EncodeToString(h[:12])
}

// BatchInflightKey is a user's batch lines in flight (zset: job id by the
// time the entry lapses if never freed), for batch.lines_in_flight.
func BatchInflightKey(userID string) string { return userKey(userID, "batch:inflight") }

// BatchRateKey is a user's batch line starts in the rolling minute (zset:
// job id by start time), for batch.lines_per_minute.
func BatchRateKey(userID string) string { return userKey(userID, "batch:lpm") }
