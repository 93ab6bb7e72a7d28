package redisq

import (
	"context"
	_ "embed"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

var (
	//go:embed lua/erase.lua
	eraseLua string
	//go:embed lua/chunks.lua
	chunksLua string
	//go:embed lua/settled.lua
	settledLua string

	eraseScript   = redis.NewScript(settleEventLua + eraseLua)
	chunksScript  = redis.NewScript(chunksLua)
	settledScript = redis.NewScript(settledLua)
)

// EraseUserJobs erases every stored job of a user among the given models
// and returns how many it erased. A job in flight is cancelled first; each
// job's content and result stream go at once (erase.lua), and the worker
// never recreates them (chunks.lua, complete.lua); a job whose settlement
// is pending keeps a record without content until the settler has
// acknowledged it (Settled), so what it used is still billed. It scans
// the models' job keys: deleting an account is rare, and a per-user index
// would cost a write on every request. Usage and ledger rows live in
// PostgreSQL and are kept.
func (q *Queue) EraseUserJobs(ctx context.Context, userID string, models []string) (int, error) {
	// On a cluster ForEachMaster runs scan on every master at once: the
	// count is shared, the tags seen are per node.
	var erased atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		seen := map[string]bool{}
		for _, tag := range rkey.PerTag(models, q.opts.Shards, nil) {
			if seen[tag] {
				continue
			}
			seen[tag] = true
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
					erased.Add(1)
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
	return int(erased.Load()), translate(err)
}

// Settled tells the job records among jobIDs that their settlement is
// done: the settler calls it once SettleMany succeeded, before it
// acknowledges the entries. A reserved job's record is kept without expiry
// from its end until then (settle_event.lua), so that its hold never lapses
// before it settles however long the settlers are down; now it is given
// ttl (jobs.result_ttl) from now, or dropped at once if its account was
// erased (erase.lua). One script per hash tag (the jobs of one slot
// together), in one pipeline.
func Settled(ctx context.Context, rdb redis.UniversalClient, jobIDs []string, ttl time.Duration) error {
	var ids []string
	for _, id := range jobIDs {
		if rkey.JobTag(id) != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// One call per hash tag (a cluster slot each), in one pipeline.
	byTag := map[string][]string{}
	var tags []string
	for _, id := range ids {
		tag := rkey.JobTag(id)
		if byTag[tag] == nil {
			tags = append(tags, tag)
		}
		byTag[tag] = append(byTag[tag], rkey.JobKey(id))
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(tags))
	for i, tag := range tags {
		cmds[i] = settledScript.EvalSha(ctx, pipe, byTag[tag], ms(ttl))
	}
	pipe.Exec(ctx) //nolint:errcheck // per-command errors are read below
	var errs []error
	for i, c := range cmds {
		err := c.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			err = settledScript.Run(ctx, rdb, byTag[tags[i]], ms(ttl)).Err()
		}
		if err != nil {
			errs = append(errs, translate(err))
		}
	}
	return errors.Join(errs...)
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
