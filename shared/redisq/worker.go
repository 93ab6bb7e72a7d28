package redisq

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// EnsureGroup creates a consumer group on a stream (and the stream) if missing.
func (q *Queue) EnsureGroup(ctx context.Context, stream, group string) error {
	err := q.rdb.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && !isBusyGroup(err) {
		return translate(err)
	}
	return nil
}

// Entry is a claimed stream entry.
type Entry struct {
	Stream string
	ID     string
	JobID  string
	// Endpoint is the id of the endpoint a prefix-aware claim placed the
	// job on (ClaimOrder.Place); "" leaves the choice to the worker.
	Endpoint string
}

// readGroup runs XREADGROUP over streams-then-ids args and returns the entries.
func (q *Queue) readGroup(ctx context.Context, group, consumer string, args []string, count int64, block time.Duration) ([]Entry, error) {
	res, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
		Streams: args, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err)
	}
	var out []Entry
	for _, s := range res {
		for _, m := range s.Messages {
			id, _ := m.Values["job"].(string)
			out = append(out, Entry{Stream: s.Stream, ID: m.ID, JobID: id})
		}
	}
	return out, nil
}

// Claim takes up to count jobs of a model for consumer, highest priority
// class first (lowest first when lowestFirst: the anti-starvation turn) and,
// within a class, users in turn (see lua/claim.lua); over a sharded queue,
// from every shard (claimShards). It also returns the bells' last ids:
// WaitWork(after=bells) returns as soon as a job is enqueued after this
// claim, so none is missed between the two; and whether the claim drained
// the queue (Bells.Drained: no need to claim again before the bell rings).
func (q *Queue) Claim(ctx context.Context, group, consumer, model string, priorities int, count int64, lowestFirst bool) ([]Entry, Bells, error) {
	return q.ClaimShare(ctx, group, consumer, model, priorities, count, ClaimOrder{LowestFirst: lowestFirst}, -1)
}

// ClaimShare is Claim in the order o; with o.Bulk the last of the
// priorities classes is the batch class (config.BatchClass): while any
// other class has jobs waiting, it claims at most bulkCap of the batch
// class's jobs (the slots batch.max_slot_share leaves it), and so while
// o.BulkCapped; bulkCap < 0 is no limit. Over a sharded queue each shard is asked for a share of
// bulkCap, and a shard sees only its own interactive backlog.
func (q *Queue) ClaimShare(ctx context.Context, group, consumer, model string, priorities int, count int64, o ClaimOrder, bulkCap int64) ([]Entry, Bells, error) {
	if !o.Bulk {
		bulkCap = -1
	}
	order := o.Classes(priorities)
	if q.opts.Shards > 1 {
		return q.claimShards(ctx, group, consumer, model, priorities, count, order, bulkCap, o.capped(), o.Place)
	}
	tag := rkey.Tag(model)
	res, err := claimScript.Run(ctx, q.rdb, claimKeys(tag, model, order, o.Place != nil),
		claimArgs(group, consumer, count, bulkCap, bulkAt(order, priorities, bulkCap), o.capped(), o.Place)...).StringSlice()
	if err != nil {
		return nil, Bells{}, translate(err)
	}
	out, bell, state := parseClaim(res)
	return out, Bells{ids: []string{bell}, Drained: state == claimDrained, Held: state == claimHeld}, nil
}

// WaitWork blocks up to block until a job of model is enqueued after the
// bell ids `after` (from Claim). It reports whether one was.
func (q *Queue) WaitWork(ctx context.Context, model string, after Bells, block time.Duration) (bool, error) {
	if q.opts.Shards > 1 {
		return q.waitShards(ctx, model, after, block)
	}
	a := "0-0"
	if len(after.ids) > 0 {
		a = after.ids[0]
	}
	return q.waitBell(ctx, rkey.BellKey(model), a, block)
}

// Pending returns this consumer's own unacknowledged entries (after a
// restart under the same name).
func (q *Queue) Pending(ctx context.Context, group, consumer, stream string, count int64) ([]Entry, error) {
	return q.readGroup(ctx, group, consumer, []string{stream, "0"}, count, -1)
}

// AutoClaim takes up to count entries that have been idle longer than
// minIdle, i.e. whose worker died: they become this consumer's.
func (q *Queue) AutoClaim(ctx context.Context, group, consumer, stream string, minIdle time.Duration, count int64) ([]Entry, error) {
	msgs, _, err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: stream, Group: group, Consumer: consumer,
		MinIdle: minIdle, Start: "0-0", Count: count}).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		return nil, translate(err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		id, _ := m.Values["job"].(string)
		out = append(out, Entry{Stream: stream, ID: m.ID, JobID: id})
	}
	return out, nil
}

// Heartbeat resets the idle time of entries this consumer is running, so
// AutoClaim elsewhere leaves them alone (XCLAIM JUSTID does not raise the
// delivery count on Redis 7).
func (q *Queue) Heartbeat(ctx context.Context, group, consumer, stream string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return translate(q.rdb.XClaimJustID(ctx, &redis.XClaimArgs{Stream: stream, Group: group, Consumer: consumer,
		MinIdle: 0, Messages: ids}).Err())
}

// Start outcomes.
const (
	StartRun       = "run"       // run the job
	StartGone      = "gone"      // the job's hash expired; entry dropped
	StartDone      = "done"      // already final; entry dropped
	StartExpired   = "expired"   // deadline passed; job expired, unbilled
	StartCancelled = "cancelled" // cancelled before it ran
	StartDead      = "dead"      // too many attempts; dead-lettered
	// StartInterrupted: a lost worker's output already reached the client;
	// the job must not run again, and the caller prices what was shown
	// (Claimed is set, ChunkOutput counts it) and completes it.
	StartInterrupted = "interrupted"
)

// Claimed is a job that a worker may now run.
type Claimed struct {
	Entry   Entry
	Job     sluice.Job
	Attempt int
	// StartedAt is when the start script ran, by Redis's clock (as is
	// Job.CreatedAt), so StartedAt-CreatedAt is the queue wait.
	StartedAt time.Time
	// Cancelled: its client asked to cancel it (for StartInterrupted, whose
	// end then reads cancelled rather than failed).
	Cancelled bool
}

// Start moves a claimed entry's job to running, or finishes it without
// running (expired, cancelled, dead-lettered). It returns the outcome and,
// for StartRun, the job.
func (q *Queue) Start(ctx context.Context, e Entry, group, worker, model string) (string, *Claimed, error) {
	rs := q.StartMany(ctx, []Entry{e}, group, worker, model)
	return rs[0].Outcome, rs[0].Claimed, rs[0].Err
}

// StartResult is the outcome of starting one entry.
type StartResult struct {
	Outcome string
	Claimed *Claimed // for StartRun
	Err     error
}

// StartMany starts a batch of claimed entries in one round trip (one start
// script per entry, pipelined).
func (q *Queue) StartMany(ctx context.Context, es []Entry, group, worker, model string) []StartResult {
	out := make([]StartResult, len(es))
	cmds := make([]*redis.Cmd, len(es))
	pipe := q.rdb.Pipeline()
	args := func(e Entry) ([]string, []any) {
		tag := rkey.JobTag(e.JobID) // the job's shard
		return []string{rkey.JobKey(e.JobID), e.Stream, rkey.ResultKey(e.JobID), rkey.ShardDeadKey(tag, model), rkey.SettleKey(tag), rkey.ResultChannel(e.JobID)},
			[]any{group, e.ID, worker, q.opts.MaxAttempts, ms(q.opts.ResultTTL), e.JobID,
				q.expiredErr, q.deadErr, q.interruptedErr, q.cancelledErr, ms(q.opts.SyncRetention)}
	}
	for i, e := range es {
		if rkey.JobTag(e.JobID) == "" { // not a job id Sluice wrote: drop it
			pipe.XAck(ctx, e.Stream, group, e.ID)
			pipe.XDel(ctx, e.Stream, e.ID)
			out[i].Outcome = StartGone
			continue
		}
		keys, a := args(e)
		cmds[i] = startScript.EvalSha(ctx, pipe, keys, a...)
	}
	pipe.Exec(ctx) //nolint:errcheck // per-command errors are read below
	for i, c := range cmds {
		if c == nil {
			continue
		}
		res, err := c.Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not run (the script cache was empty): run it the slow way.
			keys, a := args(es[i])
			res, err = startScript.Run(ctx, q.rdb, keys, a...).Slice()
		}
		if err != nil {
			out[i].Err = translate(err)
			continue
		}
		out[i].Outcome, out[i].Claimed = parseStart(es[i], res)
	}
	return out
}

func parseStart(e Entry, res []any) (string, *Claimed) {
	outcome, _ := res[0].(string)
	if (outcome != StartRun && outcome != StartInterrupted) || len(res) < 2 {
		return outcome, nil
	}
	attempt, _ := res[1].(int64)
	f := splitFields(res[2:])
	c := &Claimed{Entry: e, Attempt: int(attempt), Job: sluice.Job{
		ID: f["id"], UserID: f["user"], KeyID: f["key"], Model: f["model"], Endpoint: f["endpoint"],
		Body: json.RawMessage(f["body"]), BodyRef: f["body_ref"], Stream: f["stream"] == "1", Async: f["async"] == "1",
		WebhookURL: f["webhook"], Requested: f["alias"], Trace: f["trace"], ServiceTier: f["tier"],
		CacheSalt: f["salt"],
	}}
	if p := f["pfx"]; p != "" {
		c.Job.Prefix = strings.Split(p, ",")
	}
	c.Job.Priority, _ = strconv.Atoi(f["prio"])
	if r := f["resp"]; r != "" {
		var rj sluice.ResponseJob
		if json.Unmarshal([]byte(r), &rj) == nil {
			c.Job.Response = &rj
		}
	}
	if v, err := strconv.ParseInt(f["created"], 10, 64); err == nil {
		c.Job.CreatedAt = time.UnixMilli(v)
	}
	if v, err := strconv.ParseInt(f["deadline"], 10, 64); err == nil {
		c.Job.Deadline = time.UnixMilli(v)
	}
	if v, err := strconv.ParseInt(f["started"], 10, 64); err == nil {
		c.StartedAt = time.UnixMilli(v)
	}
	c.Cancelled = f["cancel"] == "1"
	return outcome, c
}

// Chunks appends streamed chunks to a job's result stream in one round trip.
// The first batch also marks the job as having shown output, so a reclaim
// will not rerun it.
// Nothing is appended to a job that is gone or erased (chunks.lua).
func (q *Queue) Chunks(ctx context.Context, jobID string, data []string, first bool) error {
	args := make([]any, 0, len(data)+1)
	args = append(args, b2s(first))
	for _, d := range data {
		args = append(args, d)
	}
	return translate(chunksScript.Run(ctx, q.rdb, []string{rkey.JobKey(jobID), rkey.ResultKey(jobID), rkey.ResultChannel(jobID)}, args...).Err())
}

// ShownChunks returns the chunks a job's result stream holds, in order: the
// output its client was shown, read to price a job whose worker was lost
// mid-stream (StartInterrupted). Read in pages, as a long answer may hold
// many thousands.
func (q *Queue) ShownChunks(ctx context.Context, jobID string) ([]string, error) {
	var out []string
	from := "-"
	for {
		msgs, err := q.rdb.XRangeN(ctx, rkey.ResultKey(jobID), from, "+", 1000).Result()
		if err != nil {
			return nil, translate(err)
		}
		for _, m := range msgs {
			if m.Values["type"] == "chunk" {
				d, _ := m.Values["data"].(string)
				out = append(out, d)
			}
		}
		if len(msgs) < 1000 {
			return out, nil
		}
		from = "(" + msgs[len(msgs)-1].ID
	}
}

// Outcome is how a job ended, as the worker reports it.
type Outcome struct {
	Status sluice.JobStatus
	Result []byte // upstream response body, for non-streamed jobs
	// ResultRef is the object-store key the result was written to (Result
	// is then empty): written before Complete, so the key never dangles.
	ResultRef string
	Error     *sluice.Error // for failed jobs; stored through Options.EncodeError
	HTTP      int           // status for a synchronous caller
	Usage     *sluice.UsageEvent
	// EngineMS is the engine time the worker measured (its calls to the
	// engine, retries included, backoff waits not), in milliseconds: stored
	// on the job in the same atomic step, for settlement's GPU-second price.
	EngineMS int64
	// Lease, if set, is the key of the job's concurrency lease (a sorted set
	// with the job id as member, admission's): Complete removes the job
	// from it before the end event is written, so a synchronous caller may
	// answer without releasing it first (Event.LeaseReleased).
	Lease string
}

// Complete records a job's end: result, usage event and ack in one atomic
// script. It returns false when the job was already final (a duplicate).
func (q *Queue) Complete(ctx context.Context, group string, e Entry, o Outcome) (bool, error) {
	var usageS, evS string
	errS := q.encodeError(o.Error)
	if o.Usage != nil {
		b, _ := json.Marshal(o.Usage.Usage)
		usageS = string(b)
		b, _ = json.Marshal(o.Usage)
		evS = string(b)
	}
	tag := rkey.JobTag(e.JobID)
	keys := []string{rkey.JobKey(e.JobID), e.Stream, rkey.ResultKey(e.JobID), rkey.UsageKey(tag), rkey.HooksKey(tag), rkey.SettleKey(tag), rkey.ResultChannel(e.JobID)}
	args := []any{group, e.ID, string(o.Status), string(o.Result), errS, usageS, evS, ms(q.opts.ResultTTL), o.HTTP, e.JobID, o.ResultRef, max(o.EngineMS, 0),
		ms(q.opts.SyncRetention), ""}
	if o.Lease != "" && !q.opts.Durable.Enabled() && !q.hub.cluster {
		// One Redis: the lease's release and the completion in one round
		// trip, in that order on one connection.
		args[len(args)-1] = "1"
		pipe := q.rdb.Pipeline()
		pipe.ZRem(ctx, o.Lease, e.JobID)
		cmd := completeScript.EvalSha(ctx, pipe, keys, args...)
		pipe.Exec(ctx) //nolint:errcheck // the completion's own reply decides; a failed release lapses within the lease ttl
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			cmd = completeScript.Run(ctx, q.rdb, keys, args...) // the release went through; the completion again, loading the script
		}
		n, err := cmd.Int64()
		if err != nil {
			return false, translate(err)
		}
		return n == 1, nil
	}
	if o.Lease != "" {
		// A cluster keeps the lease (the user's slot) and the job on
		// different masters, where one pipeline would not keep the order:
		// the release goes first, alone. A failed release leaves the flag
		// off, and the caller releases before it answers.
		if q.rdb.ZRem(ctx, o.Lease, e.JobID).Err() == nil {
			args[len(args)-1] = "1"
		}
	}
	// A completion lost at failover would leave the job to be reclaimed and
	// run again (and a webhook or poller would see it end twice): it waits
	// for replicas (when configured) like the enqueue.
	var n int64
	err := q.opts.Durable.Do(ctx, keys[0], func(c redis.Cmdable) (err error) {
		n, err = completeScript.Run(ctx, c, keys, args...).Int64()
		return err
	})
	if err != nil {
		return false, translate(err)
	}
	return n == 1, nil
}

// Release hands a claimed but unstarted-upstream entry back at once (drain):
// the job returns to queued and its entry becomes claimable by others.
func (q *Queue) Release(ctx context.Context, group string, e Entry) error {
	pipe := q.rdb.TxPipeline()
	pipe.HSet(ctx, rkey.JobKey(e.JobID), "status", "queued")
	pipe.HIncrBy(ctx, rkey.JobKey(e.JobID), "attempts", -1)
	// Re-adding puts the job at the tail of its stream; acking the old entry
	// removes it from this worker's pending list.
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: e.Stream, Values: []any{"job", e.JobID}})
	pipe.XAck(ctx, e.Stream, group, e.ID)
	pipe.XDel(ctx, e.Stream, e.ID)
	_, err := pipe.Exec(ctx)
	return translate(err)
}

// JobWebhook returns what a webhook delivery needs about a job.
func (q *Queue) JobWebhook(ctx context.Context, jobID string) (url string, state *sluice.JobState, err error) {
	url, err = q.rdb.HGet(ctx, rkey.JobKey(jobID), "webhook").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil, sluice.ErrNotFound
	}
	if err != nil {
		return "", nil, translate(err)
	}
	state, err = q.Get(ctx, jobID, "")
	return url, state, err
}

// DeadLetter records a job that failed for good, with its reason, in the
// dead-letter stream of the job's shard.
func (q *Queue) DeadLetter(ctx context.Context, model, jobID, reason string) error {
	dead := rkey.DeadKey(model)
	if tag := rkey.JobTag(jobID); tag != "" {
		dead = rkey.ShardDeadKey(tag, model)
	}
	return translate(q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dead, MaxLen: 100000, Approx: true,
		Values: []any{"job", jobID, "error", reason}}).Err())
}

// ParkUsage keeps a usage event the database refused, with the reason, in the
// tag's usage dead-letter stream, for an operator to fix and replay.
func (q *Queue) ParkUsage(ctx context.Context, e Message, reason string) error {
	return translate(q.rdb.XAdd(ctx, &redis.XAddArgs{Stream: rkey.ParkedUsageKey(e.Stream),
		Values: []any{"ev", e.Field("ev"), "error", reason}}).Err())
}
