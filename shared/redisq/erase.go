package redisq

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// EraseUserJobs deletes every stored job of a user among the given models —
// its hash (prompt, result) and its result stream — and returns how many it
// erased. It scans the models' job keys: deleting an account is rare, and a
// per-user index would cost a write on every request. Usage and ledger rows
// live in PostgreSQL and are kept.
func (q *Queue) EraseUserJobs(ctx context.Context, userID string, models []string) (int, error) {
	seen := map[string]bool{}
	erased := 0
	scan := func(ctx context.Context, c *redis.Client) error {
		for _, m := range models {
			tag := Tag(m)
			if seen[tag+c.String()] {
				continue
			}
			seen[tag+c.String()] = true
			it := c.Scan(ctx, 0, tagged(tag)+"job:*", 500).Iterator()
			for it.Next(ctx) {
				key := it.Val()
				owner, err := c.HGet(ctx, key, "user").Result()
				if err != nil || owner != userID {
					continue
				}
				id := key[len(tagged(tag)+"job:"):]
				// A job not yet ended must still end through its scripts, so
				// that its reservation settles: a queued one is cancelled (it
				// ends now, its settle entry carrying what settlement needs);
				// a running one loses its prompt and is told to stop, and its
				// hash expires after it ends.
				if st, err := q.Cancel(ctx, id, ""); err == nil && st == sluice.JobRunning {
					if err := c.HDel(ctx, key, "body").Err(); err != nil {
						return err
					}
					continue
				}
				if err := c.Unlink(ctx, key, ResultKey(id)).Err(); err != nil {
					return err
				}
				erased++
			}
			if err := it.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch c := q.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return scan(ctx, n) })
	case *redis.Client:
		err = scan(ctx, c)
	}
	return erased, translate(err)
}
