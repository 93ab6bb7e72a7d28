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
	//go:embed lua/engaged.lua
	engagedLua    string
	engagedScript = redis.NewScript(engagedLua)
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

// Engaged marks the current attempt of a job worker is running as sent to
// its engine, just before the call: if worker dies before completing the
// job, the reclaiming start bills this attempt's prompt bound and published
// output (start.lua). It reports false when the job is no longer worker's.
func (q *Queue) Engaged(ctx context.Context, jobID, worker string) (bool, error) {
	n, err := engagedScript.Run(ctx, q.rdb, []string{rkey.JobKey(jobID)}, worker).Int64()
	if err != nil {
		return false, translate(err)
	}
	return n == 1, nil
}

// Disengaged unmarks a job's current attempt (Engaged): its engine work is
// not carried to the job's end. The worker calls it when Sluice itself
// throws the attempt's output away (the object store refused the result):
// that is the platform's cost, not the user's.
func (q *Queue) Disengaged(ctx context.Context, jobID string) error {
	return translate(q.rdb.HDel(ctx, rkey.JobKey(jobID), "eng_at", "eng_out").Err())
}

// MaxAttempts is the most attempts a job gets (jobs.max_attempts).
func (q *Queue) MaxAttempts() int { return q.opts.MaxAttempts }
