// Package redisq is Sluice's hot state in Redis: job streams per model and
// priority, per-job result streams, usage and webhook streams. Every
// multi-step change is one Lua script (lua/*.lua), so it is atomic and
// touches one hash slot.
package redisq

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

var (
	//go:embed lua/enqueue.lua
	enqueueLua string
	//go:embed lua/start.lua
	startLua string
	//go:embed lua/complete.lua
	completeLua string
	//go:embed lua/cancel.lua
	cancelLua string
	//go:embed lua/claim.lua
	claimLua string
	//go:embed lua/settle_event.lua
	settleEventLua string

	enqueueScript  = redis.NewScript(enqueueLua)
	startScript    = redis.NewScript(settleEventLua + slimLua + startLua)
	completeScript = redis.NewScript(settleEventLua + slimLua + completeLua)
	cancelScript   = redis.NewScript(settleEventLua + cancelLua)
	claimScript    = redis.NewScript(claimLua)
)

// Options tune the queue; zero values take the defaults noted.
type Options struct {
	ResultTTL   time.Duration // how long finished jobs are kept; default 24h
	MaxAttempts int           // claims before a job is dead-lettered; default 3
	MaxQueue    int64         // entries per stream before enqueue answers 503; default 100000
	// Shards is how many shards (hash tags, so cluster slots) each model's
	// queue is split into; default 1, the unsharded key names (see shards.go).
	Shards int
	// EncodeError is the stored form of a failed job's error, handed to its
	// client verbatim: openai.EncodeError, injected by shared/app. A queue
	// built without one (tests, tools) stores only the message and code.
	EncodeError func(*sluice.Error) []byte
	// Waits for result events share connections (wait.go). WaitDirect is
	// how many waits of this process block on a connection of their own
	// (no notice round trip, so no added latency at low load); default 16,
	// negative for none. WaitReaders bounds the concurrent reads of the
	// others; default 32. WaitPoll is how often a waiting stream is re-read
	// even without a notice (a safety net: notices are not expected to be
	// lost); default 5s.
	WaitDirect  int
	WaitReaders int
	WaitPoll    time.Duration

	// SyncRetention is how long a synchronous job's slimmed record (status,
	// usage, settlement inputs) is kept once delivered; default 15m (at most
	// ResultTTL). See Delivered.
	SyncRetention time.Duration

	// Durable runs the writes a failover must not lose (enqueue,
	// completion) with WAIT for replicas; nil: WAIT off.
	Durable *Durable
}

// Queue is the Redis side of the job path.
type Queue struct {
	rdb  redis.UniversalClient
	opts Options
	hub  *hub // this process's waiters (wait.go)
	// The errors the Lua scripts record themselves, encoded once.
	expiredErr, deadErr, interruptedErr, cancelledErr string
	rot                                               atomic.Uint64 // Claim's rotating first shard
}

// New wraps a Redis client.
func New(rdb redis.UniversalClient, opts Options) *Queue {
	if opts.ResultTTL == 0 {
		opts.ResultTTL = 24 * time.Hour
	}
	if opts.SyncRetention == 0 {
		opts.SyncRetention = min(15*time.Minute, opts.ResultTTL)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 3
	}
	if opts.MaxQueue == 0 {
		opts.MaxQueue = 100000
	}
	if opts.WaitDirect == 0 {
		opts.WaitDirect = 16
	}
	if opts.WaitReaders <= 0 {
		opts.WaitReaders = 32
	}
	if opts.WaitPoll <= 0 {
		opts.WaitPoll = 5 * time.Second
	}
	if opts.EncodeError == nil {
		opts.EncodeError = bareError
	}
	opts.Shards = max(opts.Shards, 1)
	if opts.Durable == nil {
		opts.Durable = NewDurable(rdb, 0, 0, nil)
	}
	q := &Queue{rdb: rdb, opts: opts, hub: newHub(rdb, opts)}
	q.expiredErr, q.deadErr = q.encodeError(sluice.ErrJobExpired), q.encodeError(sluice.ErrJobDeadLettered)
	q.interruptedErr, q.cancelledErr = q.encodeError(sluice.ErrWorkerLost), q.encodeError(sluice.ErrJobCancelled)
	return q
}

// encodeError is a job error's stored form ("" for none).
func (q *Queue) encodeError(e *sluice.Error) string {
	if e == nil {
		return ""
	}
	return string(q.opts.EncodeError(e))
}

// bareError is the stored form without an injected encoder.
func bareError(e *sluice.Error) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
		Code    string `json:"code,omitempty"`
	}{e.Message, e.Code})
	return b
}

// Durable returns the queue's durable-write runner (WAIT settings and the
// count of WAITs that timed out).
func (q *Queue) Durable() *Durable { return q.opts.Durable }

// Client returns the underlying Redis client.
func (q *Queue) Client() redis.UniversalClient { return q.rdb }

// translate maps Redis failures to sluice errors.
func translate(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var se *sluice.Error
	if errors.As(err, &se) {
		return err
	}
	return sluice.Unavailable("The queue is unavailable.", err)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Enqueue stores a job and adds it to its model's stream: in the shard its
// id names (NewJobID). timeout is how long it may take before it expires;
// the deadline is set by Redis's clock.
func (q *Queue) Enqueue(ctx context.Context, j *sluice.Job, timeout time.Duration) error {
	tag := rkey.JobTag(j.ID)
	if !q.ownsTag(j.Model, tag) {
		// No worker reads a shard outside jobs.shards: the job would never run.
		return fmt.Errorf("redisq: job id %q is in no shard of model %q (jobs.shards %d)", j.ID, j.Model, q.opts.Shards)
	}
	stream := rkey.ShardStreamKey(tag, j.Model, j.Priority)
	args := []any{j.ID, ms(q.opts.ResultTTL), ms(timeout), q.opts.MaxQueue, j.UserID,
		"id", j.ID, "user", j.UserID, "key", j.KeyID, "model", j.Model, "endpoint", j.Endpoint,
		"body", string(j.Body), "stream", b2s(j.Stream), "prio", j.Priority, "async", b2s(j.Async),
		"webhook", j.WebhookURL, "skey", stream, "alias", j.Requested, "trace", j.Trace, "resv", b2s(j.Reserved), "body_ref", j.BodyRef,
		"hold", j.Hold, "tier", j.ServiceTier}
	if j.CacheSalt != "" {
		args = append(args, "salt", j.CacheSalt)
	}
	if len(j.Prefix) > 0 { // read by claim.lua to place the job (prefix-aware placement)
		args = append(args, "pfx", strings.Join(j.Prefix, ","))
	}
	if j.Response != nil { // only a /v1/responses job carries one
		b, err := json.Marshal(j.Response)
		if err != nil {
			return err
		}
		args = append(args, "resp", string(b))
	}
	keys := []string{rkey.JobKey(j.ID), stream, rkey.ShardFairKey(tag, j.Model, j.Priority),
		rkey.ShardVClockKey(tag, j.Model, j.Priority), rkey.ShardBellKey(tag, j.Model), rkey.PlacementKey(tag, j.Model)}
	// A job acknowledged with 200/202 must survive a failover: the enqueue
	// waits for replicas (when configured) before it is answered.
	var res []int64
	err := q.opts.Durable.Do(ctx, keys[0], func(c redis.Cmdable) (err error) {
		res, err = enqueueScript.Run(ctx, c, keys, args...).Int64Slice()
		return err
	})
	if err != nil {
		return translate(err)
	}
	if res[0] == 0 {
		return &sluice.Error{Kind: sluice.KindUnavailable, Code: sluice.CodeNoCapacity,
			Message: fmt.Sprintf("The queue for model %q is full; retry later.", j.Model)}
	}
	j.CreatedAt = time.UnixMilli(res[1])
	j.Deadline = j.CreatedAt.Add(timeout)
	return nil
}

func b2s(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Event is one entry of a job's result stream.
type Event struct {
	ID     string
	Type   string // start, chunk, end
	Data   string // chunk: one SSE data payload
	Status sluice.JobStatus
	Result string // end: the upstream response body (non-streamed jobs)
	// ResultRef (end) is the object-store key of the result when it was too
	// large for Redis; Result is then empty.
	ResultRef string
	Error     string // end: OpenAI error JSON
	Usage     string // end: usage JSON
	HTTP      int    // end: the status a synchronous caller should answer with
	// Slim (end): the job's record was already cut to what it keeps once
	// delivered (complete.lua, a synchronous job): its caller only deletes
	// the result stream (ResultTaken), no Delivered.
	Slim bool
	// LeaseReleased (end): the worker released the job's concurrency lease
	// before it wrote this event (Outcome.Lease), so the caller's next
	// request cannot find it counted even if the caller answers first.
	LeaseReleased bool
}

// Events reads result events after the id `after` ("0" for all), waiting
// up to block (0: as long as ctx allows) for the first one. It returns none
// on timeout. A caller that waits in a loop should hold a Watch instead:
// this registers and deregisters one per call.
func (q *Queue) Events(ctx context.Context, jobID, after string, block time.Duration) ([]Event, error) {
	w := q.Watch(jobID)
	defer w.Close()
	wctx := ctx
	if block > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, block)
		defer cancel()
	}
	evs, err := w.Next(wctx, after)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return nil, nil // our own timeout
	}
	return evs, err
}

func toEvent(m redis.XMessage) Event {
	e := Event{ID: m.ID}
	e.Type, _ = m.Values["type"].(string)
	e.Data, _ = m.Values["data"].(string)
	st, _ := m.Values["status"].(string)
	e.Status = sluice.JobStatus(st)
	e.Result, _ = m.Values["result"].(string)
	e.ResultRef, _ = m.Values["ref"].(string)
	e.Error, _ = m.Values["error"].(string)
	e.Usage, _ = m.Values["usage"].(string)
	h, _ := m.Values["http"].(string)
	e.HTTP, _ = strconv.Atoi(h)
	e.Slim = m.Values["slim"] == "1"
	e.LeaseReleased = m.Values["lease"] == "1"
	return e
}

// Cancel cancels a job owned by owner ("" for any owner). It returns the
// status after the call; sluice.ErrNotFound if there is no such job of owner's.
func (q *Queue) Cancel(ctx context.Context, jobID, owner string) (sluice.JobStatus, error) {
	if rkey.JobTag(jobID) == "" {
		return "", sluice.ErrNotFound
	}
	st, err := cancelScript.Run(ctx, q.rdb, []string{rkey.JobKey(jobID), rkey.ResultKey(jobID), rkey.SettleKey(rkey.JobTag(jobID)), rkey.ResultChannel(jobID)},
		owner, q.cancelledErr, ms(q.opts.ResultTTL), rkey.CancelChannel, jobID).Text()
	if err != nil {
		return "", translate(err)
	}
	if st == "notfound" {
		return "", sluice.ErrNotFound
	}
	if st == "cancelling" {
		return sluice.JobRunning, nil
	}
	return sluice.JobStatus(st), nil
}

// Get returns a job as its owner sees it; ErrNotFound for anyone else's.
func (q *Queue) Get(ctx context.Context, jobID, owner string) (*sluice.JobState, error) {
	if rkey.JobTag(jobID) == "" {
		return nil, sluice.ErrNotFound
	}
	h, err := q.rdb.HMGet(ctx, rkey.JobKey(jobID), "user", "status", "model", "endpoint", "created", "ended", "result", "error", "usage", "result_ref", "u").Result()
	if err != nil {
		return nil, translate(err)
	}
	str := func(i int) string { s, _ := h[i].(string); return s }
	if str(1) == "" || (owner != "" && str(0) != owner) {
		return nil, sluice.ErrNotFound
	}
	js := &sluice.JobState{ID: jobID, Object: "job", Status: sluice.JobStatus(str(1)), Model: str(2), URL: str(3)}
	if v, err := strconv.ParseInt(str(4), 10, 64); err == nil {
		js.CreatedAt = v / 1000
	}
	if v, err := strconv.ParseInt(str(5), 10, 64); err == nil {
		js.EndedAt = v / 1000
	}
	if r := str(6); r != "" {
		js.Result = json.RawMessage(r)
	}
	js.ResultRef = str(9)
	if js.Result == nil && js.ResultRef == "" && js.Status == sluice.JobSucceeded && str(10) != "" {
		// A synchronous job slimmed at its completion (complete.lua) whose
		// caller has not taken its result stream yet (or died first): the
		// result is only there.
		if ms, err := q.rdb.XRevRangeN(ctx, rkey.ResultKey(jobID), "+", "-", 1).Result(); err == nil && len(ms) == 1 {
			if ev := toEvent(ms[0]); ev.Type == "end" {
				if ev.Result != "" {
					js.Result = json.RawMessage(ev.Result)
				}
				js.ResultRef = ev.ResultRef
			}
		}
	}
	e := str(7)
	if e == "" && js.Status == sluice.JobCancelled {
		e = q.cancelledErr // a slimmed record drops it (slim.lua)
	}
	if e != "" {
		var eb sluice.ErrorBody
		if json.Unmarshal([]byte(e), &eb) == nil {
			js.Error = &eb
		}
	}
	if u := usageOf(str(8), str(10)); u != "" {
		var us sluice.Usage
		if json.Unmarshal([]byte(u), &us) == nil {
			js.Usage = &us
		}
	}
	return js, nil
}

// pendingIdemTTL bounds how long an idempotency mapping lives before its job
// is confirmed enqueued: a mapping left by an instance that died in between
// lapses, so the client's retry is not answered "not found" for a day.
const pendingIdemTTL = 30 * time.Second

// Remember maps a user's idempotency key to a job id unless one is mapped
// already; it returns the job id in force. The mapping is pending until
// Confirm.
func (q *Queue) Remember(ctx context.Context, userID, idemKey, jobID string) (string, bool, error) {
	k := rkey.IdemKey(userID, idemKey)
	ok, err := q.rdb.SetNX(ctx, k, jobID, pendingIdemTTL).Result()
	if err != nil {
		return "", false, translate(err)
	}
	if ok {
		return jobID, true, nil
	}
	prev, err := q.rdb.Get(ctx, k).Result()
	if err != nil {
		return "", false, translate(err)
	}
	return prev, false, nil
}

// Confirm keeps an idempotency mapping for as long as its job's result,
// once the job is enqueued.
func (q *Queue) Confirm(ctx context.Context, userID, idemKey string) error {
	return translate(q.rdb.PExpire(ctx, rkey.IdemKey(userID, idemKey), q.opts.ResultTTL).Err())
}

// Forget drops an idempotency mapping (used when the enqueue after it failed).
func (q *Queue) Forget(ctx context.Context, userID, idemKey string) {
	q.rdb.Del(context.WithoutCancel(ctx), rkey.IdemKey(userID, idemKey))
}

// Depth returns the number of jobs waiting (not yet claimed) in each
// priority class of a model.
func (q *Queue) Depth(ctx context.Context, model string, priorities int) ([]int64, error) {
	bl, err := q.Backlog(ctx, model, priorities)
	if err != nil {
		return nil, err
	}
	out := make([]int64, priorities)
	for p, b := range bl {
		out[p] = b.Queued + b.Lag
	}
	return out, nil
}

// Backlog is one priority class's queue state: the autoscaling signals.
type Backlog struct {
	Queued  int64 // jobs in the fair queue, not yet claimed
	Lag     int64 // stream entries not yet delivered to a worker (handed back)
	Pending int64 // jobs claimed and running (delivered, not acknowledged)
}

// Backlog reads each priority class's queue state of a model in one round
// trip, summed over the model's shards.
func (q *Queue) Backlog(ctx context.Context, model string, priorities int) ([]Backlog, error) {
	tags := q.ShardTags(model)
	pipe := q.rdb.Pipeline()
	zc := make([]*redis.IntCmd, priorities*len(tags))
	gi := make([]*redis.XInfoGroupsCmd, priorities*len(tags))
	for p := range priorities {
		for s, t := range tags {
			zc[p*len(tags)+s] = pipe.ZCard(ctx, rkey.ShardFairKey(t, model, p))
			gi[p*len(tags)+s] = pipe.XInfoGroups(ctx, rkey.ShardStreamKey(t, model, p))
		}
	}
	pipe.Exec(ctx) //nolint:errcheck // a missing stream is an empty class; real failures show in ZCARD
	out := make([]Backlog, priorities)
	for i := range zc {
		p := i / len(tags)
		n, err := zc[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, translate(err)
		}
		out[p].Queued += n
		gs, _ := gi[i].Result()
		for _, g := range gs {
			if g.Name == rkey.GroupWorkers {
				out[p].Lag += max(g.Lag, 0)
				out[p].Pending += g.Pending
			}
		}
	}
	return out, nil
}

// splitFields turns a flat [k, v, k, v] reply into a map.
func splitFields(vals []any) map[string]string {
	m := make(map[string]string, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		k, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		m[k] = v
	}
	return m
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }
