package redisq

import (
	"context"
	_ "embed"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var (
	//go:embed lua/spend_attempt.lua
	spendAttemptLua    string
	spendAttemptScript = redis.NewScript(spendAttemptLua)
)

// SpendAttempt counts one more attempt of a job worker is running (a failed
// upstream call it is about to try again) and returns the attempts spent,
// the start's included. It fails with a conflict when the job is no longer
// that worker's running job.
func (q *Queue) SpendAttempt(ctx context.Context, jobID, worker string) (int, error) {
	n, err := spendAttemptScript.Run(ctx, q.rdb, []string{rkey.JobKey(jobID)}, worker).Int64()
	if err != nil {
		return 0, translate(err)
	}
	if n < 0 {
		return 0, sluice.Errorf(sluice.KindConflict, sluice.CodeConflict, "job %s is no longer running on %s", jobID, worker)
	}
	return int(n), nil
}

// MaxAttempts is the most attempts a job gets (jobs.max_attempts).
func (q *Queue) MaxAttempts() int { return q.opts.MaxAttempts }
