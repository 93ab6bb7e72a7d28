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
	//go:embed lua/hook_defer.lua
	hookDeferLua    string
	hookDeferScript = redis.NewScript(hookDeferLua)
	//go:embed lua/hook_due.lua
	hookDueLua    string
	hookDueScript = redis.NewScript(hookDueLua)
)

// HookTarget is what one webhook delivery needs about its job.
type HookTarget struct {
	URL     string
	UserID  string
	Tries   int    // attempts made so far
	EventID string // stable across retries: the receiver dedupes on it
	State   *sluice.JobState
}

// HookJob reads the delivery target of a hooks-stream entry's job; a job
// without a webhook (or gone) has an empty URL.
func (q *Queue) HookJob(ctx context.Context, e Entry) (*HookTarget, error) {
	v, err := q.rdb.HMGet(ctx, rkey.JobKey(e.JobID), "webhook", "user", "hook_tries", "hook_id").Result()
	if err != nil {
		return nil, translate(err)
	}
	s := func(i int) string { x, _ := v[i].(string); return x }
	h := &HookTarget{URL: s(0), UserID: s(1), EventID: s(3)}
	h.Tries, _ = strconv.Atoi(s(2))
	if h.EventID == "" {
		h.EventID = e.ID
	}
	if h.URL == "" {
		return h, nil
	}
	h.State, err = q.Get(ctx, e.JobID, "")
	if errors.Is(err, sluice.ErrNotFound) {
		h.URL = ""
		return h, nil
	}
	return h, err
}

// DeferHook acks a hooks-stream entry and, with delay ≥ 0, puts its
// delivery off by delay (into the due set, holding no slot); with delay < 0
// the delivery is over. spent is the delivery time the attempt took,
// charged to its user's budget for window; tried counts an attempt. It
// returns the attempts made so far.
func (q *Queue) DeferHook(ctx context.Context, e Entry, userID string, delay, spent, window time.Duration, tried bool) (int, error) {
	tag := rkey.JobTag(e.JobID)
	d := delay.Milliseconds()
	if delay < 0 {
		d = -1
	}
	n, err := hookDeferScript.Run(ctx, q.rdb,
		[]string{rkey.JobKey(e.JobID), e.Stream, rkey.HooksDueKey(tag), rkey.HookTimeKey(tag, userID)},
		rkey.GroupHooks, e.ID, e.JobID, d, spent.Milliseconds(), max(window.Milliseconds(), 1), b2s(tried)).Int64()
	return int(n), translate(err)
}

// DueHooks moves up to n put-off deliveries of tag whose wait is over back
// into its hooks stream, and returns how many it moved.
func (q *Queue) DueHooks(ctx context.Context, tag string, n int) (int, error) {
	m, err := hookDueScript.Run(ctx, q.rdb, []string{rkey.HooksDueKey(tag), rkey.HooksKey(tag)}, n).Int64()
	return int(m), translate(err)
}

// HookTimeSpent is the delivery time a user's webhooks of tag took in the
// current budget window, and how long until that window ends.
func (q *Queue) HookTimeSpent(ctx context.Context, tag, userID string) (spent, left time.Duration, err error) {
	k := rkey.HookTimeKey(tag, userID)
	pipe := q.rdb.Pipeline()
	g := pipe.Get(ctx, k)
	ttl := pipe.PTTL(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, translate(err)
	}
	ms, _ := strconv.ParseInt(g.Val(), 10, 64)
	return time.Duration(ms) * time.Millisecond, max(ttl.Val(), 0), nil
}
