package redisq

import (
	"context"
	_ "embed"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// What a synchronous job keeps once its caller is done with it (issue 16:
// Redis memory must not grow with traffic × jobs.result_ttl).

var (
	//go:embed lua/slim.lua
	slimLua string
	//go:embed lua/delivered.lua
	deliveredLua string

	deliveredScript = redis.NewScript(slimLua + deliveredLua)
)

// Delivered tells a synchronous job that its caller has its answer: its
// result stream is deleted and its record cut to what GET /v1/jobs/{id}
// (status, usage, error) and settlement still read, kept for
// Options.SyncRetention (lua/slim.lua), in one script. A reserved job not
// yet settled keeps its record until the settler is done, as every reserved
// job does (settle_event.lua), and then for SyncRetention. Async jobs are
// left alone. It is best-effort: a failure leaves the job as it was, to
// expire after Options.ResultTTL.
func (q *Queue) Delivered(ctx context.Context, jobID string) error {
	return q.delivered(ctx, jobID, false)
}

// Abandoned is Delivered for a synchronous job whose caller left without
// its answer (client gone, deadline passed), called after Cancel: a job
// that has ended is slimmed now; one still running is marked, so the
// script that ends it (complete.lua, start.lua) slims it then.
func (q *Queue) Abandoned(ctx context.Context, jobID string) error {
	return q.delivered(ctx, jobID, true)
}

func (q *Queue) delivered(ctx context.Context, jobID string, gone bool) error {
	if rkey.JobTag(jobID) == "" {
		return sluice.ErrNotFound
	}
	return translate(deliveredScript.Run(ctx, q.rdb, []string{rkey.JobKey(jobID), rkey.ResultKey(jobID)},
		ms(q.opts.SyncRetention), b2s(gone)).Err())
}

// ResultTaken queues, on pipe, what a synchronous job's caller does once it
// has an end event marked Slim: the job's record is already slim
// (complete.lua), so only the result stream is deleted — a plain DEL the
// caller pipelines with its lease's release, not a script. A failure leaves
// the stream to expire after Options.ResultTTL.
func (q *Queue) ResultTaken(ctx context.Context, pipe redis.Pipeliner, jobID string) {
	if rkey.JobTag(jobID) != "" {
		pipe.Del(ctx, rkey.ResultKey(jobID))
	}
}

// Pipeline is a pipeline on the queue's Redis, for a caller that sends
// commands of several packages (ResultTaken, a lease's release) in one
// round trip.
func (q *Queue) Pipeline() redis.Pipeliner { return q.rdb.Pipeline() }

// usageShort reads back the usage JSON a slimmed job keeps as 'u', its keys
// shortened by slim.lua so the record stays a small listpack.
var usageShort = strings.NewReplacer(`"p":`, `"prompt_tokens":`, `"c":`, `"completion_tokens":`, `"t":`, `"total_tokens":`,
	`"ct":`, `"cached_tokens":`, `"ps":`, `"prompt_source":`)

// usageOf is a job's usage JSON: its 'usage' field, or a slimmed job's 'u'.
func usageOf(usage, short string) string {
	if usage == "" && short != "" {
		return usageShort.Replace(short)
	}
	return usage
}
