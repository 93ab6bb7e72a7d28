package redisq

import (
	"context"
	_ "embed"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// Job-hash access for other packages: only this package reads or writes a
// job's hash (the architecture test holds every other package to that), so
// its fields are spelled here and in the scripts beside it.

var (
	//go:embed lua/cachehit.lua
	cacheHitLua    string
	cacheHitScript = redis.NewScript(cacheHitLua)
)

// CachedJob is a job answered from the response cache, with no GPU.
type CachedJob struct {
	JobID, UserID, KeyID, Model, Endpoint string
	Result                                string        // the cached response body
	Usage                                 string        // its usage JSON
	Hold                                  string        // the reservation's terms, for settlement
	TTL                                   time.Duration // how long the job is kept (jobs.result_ttl)
}

// CacheHitJob records a cache-answered job as succeeded, so GET /v1/jobs
// finds it, and adds its settle entry (charged at the cache price), in one
// script (lua/cachehit.lua).
func CacheHitJob(ctx context.Context, rdb redis.Scripter, j CachedJob) error {
	tag := rkey.JobTag(j.JobID)
	return cacheHitScript.Run(ctx, rdb, []string{rkey.JobKey(j.JobID), rkey.SettleKey(tag)},
		j.JobID, j.UserID, j.KeyID, j.Model, j.Endpoint, j.Result, j.Usage, j.TTL.Milliseconds(), j.Hold).Err()
}

// SettleInputs are what an ended job's hash recorded for its settlement;
// an empty field was not recorded (or the hash is gone).
type SettleInputs struct {
	Usage    string // usage JSON, as the engine counted it
	Cache    string // "1": served from the response cache
	EngineMS string // the worker's engine time, in milliseconds
	Hold     string // the reservation's terms
}

// JobSettleInputs queues, on pipe, the read of what settlement needs from a
// job's hash, so a settler reads a batch in one round trip; ParseSettleInputs
// reads the answer after the pipeline ran.
func JobSettleInputs(ctx context.Context, pipe redis.Cmdable, jobID string) *redis.SliceCmd {
	return pipe.HMGet(ctx, rkey.JobKey(jobID), "usage", "cache", "engine_ms", "hold", "u")
}

// ParseSettleInputs reads a JobSettleInputs answer.
func ParseSettleInputs(cmd *redis.SliceCmd) (SettleInputs, error) {
	v, err := cmd.Result()
	if err != nil {
		return SettleInputs{}, err
	}
	s := func(i int) string {
		if i >= len(v) {
			return ""
		}
		x, _ := v[i].(string)
		return x
	}
	return SettleInputs{Usage: usageOf(s(0), s(4)), Cache: s(1), EngineMS: s(2), Hold: s(3)}, nil
}

// JobExists queues, on pipe, whether a job's hash is still stored.
func JobExists(ctx context.Context, pipe redis.Cmdable, jobID string) *redis.IntCmd {
	return pipe.Exists(ctx, rkey.JobKey(jobID))
}
