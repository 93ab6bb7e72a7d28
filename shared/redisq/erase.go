package redisq

import (
	"context"
	_ "embed"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

var (
	//go:embed lua/erase.lua
	eraseLua string
	//go:embed lua/chunks.lua
	chunksLua string
	//go:embed lua/drop_erased.lua
	dropErasedLua string

	eraseScript      = redis.NewScript(settleEventLua + eraseLua)
	chunksScript     = redis.NewScript(chunksLua)
	dropErasedScript = redis.NewScript(dropErasedLua)
)

// EraseUserJobs erases every stored job of a user among the given models
// and returns how many it erased. A job in flight is cancelled first; each
// job's content and result stream go at once (erase.lua), and the worker
// never recreates them (chunks.lua, complete.lua); a job whose settlement
// is pending keeps a record without content until the settler has
// acknowledged it (DropErased), so what it used is still billed. It scans
// the models' job keys: deleting an account is rare, and a per-user index
// would cost a write on every request. Usage and ledger rows live in
// PostgreSQL and are kept.
func (q *Queue) EraseUserJobs(ctx context.Context, userID string, models []string) (int, error) {
	seen := map[string]bool{}
	erased := 0
	scan := func(ctx context.Context, c *redis.Client) error {
		for _, m := range models {
			tag := rkey.Tag(m)
			if seen[tag+c.String()] {
				continue
			}
			seen[tag+c.String()] = true
			it := c.Scan(ctx, 0, rkey.JobKeyPattern(tag), 500).Iterator()
			for it.Next(ctx) {
				key := it.Val()
				owner, err := c.HGet(ctx, key, "user").Result()
				if err != nil || owner != userID {
					continue
				}
				id := rkey.JobIDOfKey(key)
				res, err := eraseScript.Run(ctx, c, []string{key, rkey.ResultKey(id), rkey.SettleKey(tag)},
					userID, q.cancelledErr, rkey.CancelChannel, id).Text()
				if err != nil {
					return err
				}
				if res != "notfound" {
					erased++
				}
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

// DropErased removes the records of erased jobs (deleted accounts) among
// jobIDs: the settler calls it once their settlements are acknowledged.
// Records of other jobs are left alone.
func DropErased(ctx context.Context, rdb redis.UniversalClient, jobIDs []string) error {
	for _, id := range jobIDs {
		if rkey.JobTag(id) == "" {
			continue
		}
		if err := dropErasedScript.Run(ctx, rdb, []string{rkey.JobKey(id)}).Err(); err != nil {
			return translate(err)
		}
	}
	return nil
}

// Erased reports whether a job's account was erased while it ran (erase.lua
// set its flag), so the worker removes what it stored after the erasure. A
// job record already gone counts as erased only if it was flagged.
func (q *Queue) Erased(ctx context.Context, jobID string) (bool, error) {
	v, err := q.rdb.HGet(ctx, rkey.JobKey(jobID), "erased").Result()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return v == "1", nil
}
