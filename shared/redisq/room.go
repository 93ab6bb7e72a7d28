package redisq

import (
	"context"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// HasRoom reports whether the stream a job would join (its id's shard of
// model, at priority) is below jobs.max_queue: whether Enqueue would take
// it now rather than answer no_capacity. The two counts are read as
// enqueue.lua reads them, in one round trip; a job enqueued between this
// read and Enqueue can still find the queue full.
func (q *Queue) HasRoom(ctx context.Context, jobID, model string, priority int) (bool, error) {
	tag := rkey.JobTag(jobID)
	pipe := q.rdb.Pipeline()
	xl := pipe.XLen(ctx, rkey.ShardStreamKey(tag, model, priority))
	zc := pipe.ZCard(ctx, rkey.ShardFairKey(tag, model, priority))
	if _, err := pipe.Exec(ctx); err != nil {
		return false, translate(err)
	}
	return xl.Val()+zc.Val() < q.opts.MaxQueue, nil
}
