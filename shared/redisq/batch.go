package redisq

import (
	"context"
	_ "embed"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var (
	//go:embed lua/batch_slot.lua
	batchSlotLua    string
	batchSlotScript = redis.NewScript(batchSlotLua)
)

// BatchSlot outcomes.
const (
	BatchSlotTaken     = 1  // the line may start
	BatchSlotInFlight  = 0  // batch.lines_in_flight are running
	BatchSlotPerMinute = -1 // batch.lines_per_minute started in the last minute
)

// BatchSlot takes a batch line's slot under a user's batch limits
// (lua/batch_slot.lua); an entry never freed lapses after lapse.
func BatchSlot(ctx context.Context, rdb redis.Scripter, userID, jobID string, inFlight, perMinute int, lapse time.Duration) (int, error) {
	n, err := batchSlotScript.Run(ctx, rdb, []string{rkey.BatchInflightKey(userID), rkey.BatchRateKey(userID)},
		jobID, inFlight, perMinute, max(lapse.Milliseconds(), 1)).Int()
	return n, translate(err)
}

// BatchSlotFree frees batch lines' in-flight slots.
func BatchSlotFree(ctx context.Context, rdb redis.Cmdable, userID string, jobIDs ...string) error {
	if len(jobIDs) == 0 {
		return nil
	}
	m := make([]any, len(jobIDs))
	for i, id := range jobIDs {
		m[i] = id
	}
	return translate(rdb.ZRem(ctx, rkey.BatchInflightKey(userID), m...).Err())
}

// BatchInFlight counts a user's batch lines in flight (for tests and tools).
func BatchInFlight(ctx context.Context, rdb redis.Cmdable, userID string) (int64, error) {
	n, err := rdb.ZCount(ctx, rkey.BatchInflightKey(userID), "("+strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf").Result()
	return n, translate(err)
}

// Statuses reads jobs' statuses in one round trip per call ("" for a job
// that does not exist).
func (q *Queue) Statuses(ctx context.Context, ids []string) ([]sluice.JobStatus, error) {
	pipe := q.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, rkey.JobKey(id), "status")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, translate(err)
	}
	out := make([]sluice.JobStatus, len(ids))
	for i, c := range cmds {
		s, _ := c.Result()
		out[i] = sluice.JobStatus(s)
	}
	return out, nil
}
