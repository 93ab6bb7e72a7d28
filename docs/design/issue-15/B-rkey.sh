#!/bin/bash
# B: every Redis key, channel and group name in one leaf package, shared/redisq/rkey (stdlib only).
set -euo pipefail
FIX=/work/helpers/tools/fiximports/fiximports
mkdir -p shared/redisq/rkey
git mv shared/redisq/keys.go shared/redisq/rkey/rkey.go
R=shared/redisq/rkey/rkey.go
# package clause + doc (the file's first comment becomes the package doc)
sed -i '1s/^package redisq$/\/\/ Package rkey builds every Redis key, channel and consumer-group name Sluice\n\/\/ uses; nothing else may (see the architecture test). It is a leaf: stdlib only.\npackage rkey/' $R
# identity keys (auth_keys.go) move in
sed -n '/^\/\/ Identity keys/,$p' shared/redisq/auth_keys.go >> $R
git rm -q shared/redisq/auth_keys.go
# admission's user keys, cache key and settle group move in (exported)
cat >> $R <<'GO'

// A user's admission keys share the hash tag {u:USER}, so each admission and
// settlement script touches one Redis Cluster slot.
func userKey(userID, name string) string { return keyPrefix + "{u:" + userID + "}:" + name }

// UserKeys are one user's admission keys.
type UserKeys struct {
	Funds, Holds, HoldExp, ReqLog, TokLog, TokAmt, Lease string
}

// User returns a user's admission keys.
func User(userID string) UserKeys {
	return UserKeys{
		Funds:   userKey(userID, "funds"),   // hash: credit, inc_used, ov_used, *_held, per, init, g:<grant id>
		Holds:   userKey(userID, "holds"),   // hash: job id → its hold
		HoldExp: userKey(userID, "holdexp"), // zset: job id by the time its hold lapses
		ReqLog:  userKey(userID, "rpm"),     // zset: job id by admission time (rolling minute)
		TokLog:  userKey(userID, "tpm"),     // zset: job id by admission time
		TokAmt:  userKey(userID, "tpmv"),    // hash: job id → tokens counted, _sum
		Lease:   userKey(userID, "lease"),   // zset: job id by lease expiry
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
GO
git rm -q shared/admission/keys.go
sed -i '/^func cacheKey/,/^}/d' shared/admission/cache.go
sed -i 's/\bcacheKey(/rkey.CacheKey(/g' shared/admission/cache.go
sed -i 's/\bkeysOf(/rkey.User(/g; s/\bsettleGroup\b/rkey.GroupSettle/g; s/\.admit()/.Admit()/g; s/\.settle()/.Settle()/g;
        s/\.funds\b/.Funds/g; s/\.holds\b/.Holds/g; s/\.holdExp\b/.HoldExp/g; s/\.lease\b/.Lease/g' shared/admission/*.go
# erase.go and ParkUsage: no key built outside rkey
sed -i 's/tagged(tag)+"job:\*"/JobKeyPattern(tag)/; s/key\[len(tagged(tag)+"job:"):\]/JobIDOfKey(key)/' shared/redisq/erase.go
sed -i 's/Stream: e\.Stream + ":dead"/Stream: ParkedUsageKey(e.Stream)/' shared/redisq/worker.go
# every user of the key API: redisq.X -> rkey.X; inside redisq: X -> rkey.X
API='Tag|NewJobID|JobTag|StreamKey|FairKey|VClockKey|BellKey|DeadKey|JobKey|ResultKey|UsageKey|SettleKey|HooksKey|IdemKey|WorkersKey|EndpointsKey|EndpointsSeenKey|CancelChannel|GroupWorkers|GroupUsage|GroupHooks|AuthEvictChannel|LimitKey|JobKeyPattern|JobIDOfKey|ParkedUsageKey'
files=$(grep -rlE "redisq\.($API)\b" --include=*.go . | grep -v '^./tools/' || true)
[ -n "$files" ] && sed -i -E "s/\bredisq\.($API)\b/rkey.\1/g" $files
rfiles=$(ls shared/redisq/*.go)
# unqualified uses inside package redisq (not selectors like x.JobKey, not declarations)
sed -i -E "s/(^|[^.A-Za-z0-9_])($API)\b/\1rkey.\2/g" $rfiles
touched=$( (echo "$files"; echo "$rfiles"; ls shared/admission/*.go) | sort -u | grep . )
$FIX $touched
gofmt -w shared/redisq/rkey/rkey.go && gofmt -l shared functions gpuworker cmd internal || true
go build ./... && go vet ./shared/... ./functions/... ./gpuworker/... ./cmd/... ./internal/... && echo "B: build+vet ok"
go list -f '{{join .Imports " "}}' ./shared/redisq/rkey
