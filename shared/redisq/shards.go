package redisq

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// Sharding (jobs.shards). A model's queue is split over Options.Shards
// shards, each a full queue of its own (per priority class: job stream, fair
// queue, virtual clocks; and a bell and a dead-letter stream) under its own
// hash tag, so a cluster spreads one model's load over several masters while
// every script still touches one slot. Shard 0 is the unsharded queue, key
// for key.
//
// Fairness: a user's jobs all go to one shard, picked by a hash of the user
// id (rkey.UserShard), so within a shard the virtual-time fair queue orders
// users exactly as an unsharded queue does, and a user's own jobs stay FIFO.
// Across shards a worker claims round robin (Claim): each busy shard gets an
// equal share of the free slots. The limit: fairness is per shard, not
// global. Two backlogged users who hash to one shard share that shard's
// half while a third alone in the other shard gets the other half (1/4,
// 1/4, 1/2), and a high-priority job in one shard does not pre-empt a
// low-priority job claimed from another in the same round. With many users
// the hash spreads them evenly and the shares even out; a flooding user
// fills only their own shard, so users of other shards keep at least their
// shard's share. A global order would need the shards' clocks compared in
// one atomic step, which one slot per script rules out.
//
// Lowering jobs.shards strands the jobs queued in the dropped shards until
// it is raised again: drain first, or only raise it.

// ShardTags returns the hash tags of a model's queue shards, shard 0 first.
func (q *Queue) ShardTags(model string) []string { return rkey.ShardTags(model, q.opts.Shards) }

// Shards is the number of shards each model's queue is split into.
func (q *Queue) Shards() int { return q.opts.Shards }

// NewJobID returns a fresh job id for a user's job of model: it carries the
// tag of the user's shard, where Enqueue puts the job.
func (q *Queue) NewJobID(model, userID string) string {
	return rkey.NewUserJobID(model, userID, q.opts.Shards)
}

// Streams returns the job streams of a model: every shard's stream of each
// priority class, priority 0 first.
func (q *Queue) Streams(model string, priorities int) []string {
	tags := q.ShardTags(model)
	out := make([]string, 0, priorities*len(tags))
	for p := range priorities {
		for _, t := range tags {
			out = append(out, rkey.ShardStreamKey(t, model, p))
		}
	}
	return out
}

// ownsTag reports whether tag is one of the model's shard tags.
func (q *Queue) ownsTag(model, tag string) bool {
	return tag != "" && slices.Contains(q.ShardTags(model), tag)
}

// Bells is what a Claim saw of a model's queue: the last ids of each
// shard's bell stream (for WaitWork: a job enqueued after the claim rings
// past them, so none is missed between the two), and whether the claim
// left anything to claim at once.
type Bells struct {
	ids []string // shard 0 first (IDs)
	// Drained: the claim took fewer jobs than asked because every shard's
	// every class was empty (nothing queued, nothing handed back, no class
	// held to a cap). Claiming again finds nothing until an enqueue rings a
	// bell: the worker goes straight to WaitWork. A claim that took fewer
	// for any other reason (a scan window, the batch share, jobs left to
	// another worker's endpoints, a shard not asked) is not Drained.
	Drained bool
	// Held: the claim took nothing, and jobs carrying a prefix chain are
	// queued, left to other workers' endpoints until they have waited
	// Placement.SpillAfter: the worker looks again then rather than
	// sleeping on the bell alone.
	Held bool
}

// ClaimOrder is the order a claim takes the priority classes in.
type ClaimOrder struct {
	// LowestFirst takes the classes lowest first (the aging turn); with a
	// batch class (Bulk), the interactive ones lowest first and the batch
	// class still last.
	LowestFirst bool
	// Bulk: the last class is the batch class (config.BatchClass), capped
	// while interactive jobs wait (ClaimShare).
	Bulk bool
	// BulkFirst takes the batch class first (its turn: up to its cap).
	BulkFirst bool
	// BulkCapped holds the batch class to its cap even with no interactive
	// job waiting: the worker sets it while interactive jobs run on its
	// endpoints, so slots stay free for the next interactive arrival
	// instead of filling with batch work it would have to wait behind (no
	// preemption).
	BulkCapped bool
	// Place, if set, claims prefix-aware: jobs whose prompt prefix maps to
	// another worker's endpoint are left to it for up to SpillAfter, and
	// each claimed job names the endpoint it goes to (Entry.Endpoint).
	Place *Placement
}

// Placement is a worker's side of prefix-aware claiming (claim.lua): its
// endpoints of the model with their free slots, and the bounds of
// config.PrefixCache.
type Placement struct {
	Endpoints  []EndpointSlots
	SpillAfter time.Duration // a job waits this long for its prefix's endpoint at most
	TTL        time.Duration // a prefix→endpoint entry lives this long unused
	MaxEntries int           // per model shard, least recently used dropped first
	Window     int           // queued jobs per class a claim looks at
}

// EndpointSlots is one of the claiming worker's endpoints: a stable id
// (the same across restarts, distinct across engines) and its free slots.
type EndpointSlots struct {
	ID   string
	Free int64
}

// placeArgs are claim.lua's ARGV[7..] under p.
func placeArgs(p *Placement) []any {
	if p == nil {
		return []any{0}
	}
	a := []any{1, "", p.SpillAfter.Milliseconds(), p.TTL.Milliseconds(), p.MaxEntries, p.Window}
	for _, e := range p.Endpoints {
		a = append(a, e.ID, e.Free)
	}
	return a
}

// claimArgs are claim.lua's ARGV.
func claimArgs(group, consumer string, count, bulkCap int64, at, capped int, p *Placement) []any {
	return append([]any{group, consumer, count, bulkCap, at, capped}, placeArgs(p)...)
}

// capped is ARGV[6] of claim.lua.
func (o ClaimOrder) capped() int {
	if o.BulkCapped {
		return 1
	}
	return 0
}

// Classes lists the classes of priorities in the order a claim visits them.
func (o ClaimOrder) Classes(priorities int) []int {
	n := priorities
	if o.Bulk {
		n-- // the batch class is placed below
	}
	out := make([]int, 0, priorities)
	for i := range n {
		if o.LowestFirst {
			out = append(out, n-1-i)
		} else {
			out = append(out, i)
		}
	}
	switch {
	case !o.Bulk:
	case o.BulkFirst:
		out = append([]int{priorities - 1}, out...)
	default:
		out = append(out, priorities-1)
	}
	return out
}

// claimKeys are one shard's claim.lua keys.
func claimKeys(tag, model string, order []int, place bool) []string {
	keys := make([]string, 0, 3*len(order)+3)
	for _, p := range order {
		keys = append(keys, rkey.ShardStreamKey(tag, model, p), rkey.ShardFairKey(tag, model, p), rkey.ShardVClockKey(tag, model, p))
	}
	keys = append(keys, rkey.ShardBellKey(tag, model), rkey.PlacementKey(tag, model))
	if place {
		keys = append(keys, rkey.AffinityKey(tag, model), rkey.AffinityLRUKey(tag, model), rkey.EndpointSlotsKey(tag, model))
	}
	return keys
}

// bulkAt is the batch class's place in order, or -1 with no batch cap.
func bulkAt(order []int, priorities int, bulkCap int64) int {
	if bulkCap < 0 {
		return -1
	}
	return slices.Index(order, priorities-1)
}

// isBulk reports whether a claimed entry is of the batch class (the last
// of priorities classes).
func isBulk(tag, model string, priorities int, e Entry) bool {
	return e.Stream == rkey.ShardStreamKey(tag, model, priorities-1)
}

// IDs are the bell ids the claim saw, shard 0 first: where its next
// WaitWork starts reading each shard's bell.
func (b Bells) IDs() []string { return b.ids }

// Claim states (claim.lua's second reply field).
const (
	claimDrained = "drained"
	claimHeld    = "held"
)

// parseClaim reads claim.lua's reply: the entries, the bell's last id and
// the claim's state.
func parseClaim(res []string) ([]Entry, string, string) {
	if len(res) < 2 {
		return nil, "0-0", ""
	}
	out := make([]Entry, 0, (len(res)-2)/4)
	for i := 2; i+3 < len(res); i += 4 {
		out = append(out, Entry{Stream: res[i], ID: res[i+1], JobID: res[i+2], Endpoint: res[i+3]})
	}
	return out, res[0], res[1]
}

// claimShards claims up to count jobs over a model's shards. Batch filling:
// the first round asks every shard for an equal share of count in one
// pipeline, starting at a shard that rotates from call to call (so the
// remainder of an uneven split, and the only shards asked when count is
// below the number of shards, move around); a shard asked for nothing has
// only its bell read (and, with placement, its placement hash's length). If
// that left slots free, the shards that gave all they were asked (or were
// not asked) are asked for the rest in turn. The claim is Drained only when
// every shard was asked and each was drained.
func (q *Queue) claimShards(ctx context.Context, group, consumer, model string, priorities int, count int64, classes []int, bulkCap int64, capped int, place *Placement) ([]Entry, Bells, error) {
	tags := q.ShardTags(model)
	n := len(tags)
	start := int(q.rot.Add(1) % uint64(n))
	order := make([]int, n)
	share := make([]int64, n)
	bulk := make([]int64, n) // each shard's part of bulkCap
	for i := range n {
		order[i] = (start + i) % n
		share[i] = count / int64(n)
		if int64(i) < count%int64(n) {
			share[i]++
		}
		bulk[i] = -1
		if bulkCap >= 0 {
			bulk[i] = bulkCap / int64(n)
			if int64(i) < bulkCap%int64(n) {
				bulk[i]++
			}
		}
	}
	at := bulkAt(classes, priorities, bulkCap)
	bulkLeft := bulkCap
	bells := Bells{ids: make([]string, n), Drained: true}
	held := false
	claims := make([]*redis.Cmd, n)
	reads := make([]*redis.XMessageSliceCmd, n)
	placing := make([]*redis.IntCmd, n)
	pipe := q.rdb.Pipeline()
	for i, s := range order {
		if share[i] == 0 {
			reads[i] = pipe.XRevRangeN(ctx, rkey.ShardBellKey(tags[s], model), "+", "-", 1)
			if place != nil {
				placing[i] = pipe.HLen(ctx, rkey.PlacementKey(tags[s], model))
			}
			continue
		}
		claims[i] = claimScript.EvalSha(ctx, pipe, claimKeys(tags[s], model, classes, place != nil),
			claimArgs(group, consumer, share[i], bulk[i], at, capped, place)...)
	}
	pipe.Exec(ctx) //nolint:errcheck // per-command errors are read below
	var out []Entry
	var errs []error
	more := make([]bool, n) // may have more to give
	for i, s := range order {
		if c := reads[i]; c != nil {
			bells.ids[s] = "0-0"
			bells.Drained = false // not asked: what it holds is not known
			if ms, err := c.Result(); err != nil && !errors.Is(err, redis.Nil) {
				errs = append(errs, err)
			} else if len(ms) > 0 {
				bells.ids[s] = ms[0].ID
			}
			if h := placing[i]; h != nil && h.Val() > 0 {
				held = true
			}
			more[i] = true
			continue
		}
		res, err := claims[i].StringSlice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			res, err = claimScript.Run(ctx, q.rdb, claimKeys(tags[s], model, classes, place != nil),
				claimArgs(group, consumer, share[i], bulk[i], at, capped, place)...).StringSlice()
		}
		if err != nil {
			// Claimed entries are pending in the stream whatever happens
			// here, so a failure loses nothing: they are reclaimed.
			errs = append(errs, err)
			bells.ids[s] = "0-0"
			bells.Drained = false
			continue
		}
		es, bell, state := parseClaim(res)
		bells.ids[s] = bell
		bells.Drained = bells.Drained && state == claimDrained
		held = held || state == claimHeld
		out = append(out, es...)
		more[i] = int64(len(es)) == share[i]
		for _, e := range es {
			if bulkLeft > 0 && isBulk(tags[s], model, priorities, e) {
				bulkLeft--
			}
		}
	}
	for i, s := range order {
		left := count - int64(len(out))
		if left <= 0 || len(errs) > 0 {
			break
		}
		if !more[i] {
			continue
		}
		res, err := claimScript.Run(ctx, q.rdb, claimKeys(tags[s], model, classes, place != nil),
			claimArgs(group, consumer, left, bulkLeft, at, 0, place)...).StringSlice()
		if err != nil {
			errs = append(errs, err)
			break
		}
		es, _, _ := parseClaim(res) // the first round's bell id is the earlier, so the safer
		out = append(out, es...)
		for _, e := range es {
			if bulkLeft > 0 && isBulk(tags[s], model, priorities, e) {
				bulkLeft--
			}
		}
	}
	bells.Held = held && len(out) == 0
	if len(errs) > 0 && len(out) == 0 {
		return nil, bells, translate(errors.Join(errs...))
	}
	return out, bells, nil
}

// waitShards blocks on every shard's bell at once (one XREAD each: bells of
// different slots cannot share one call on a cluster) and returns when any
// rings, or after block. The reads left waiting end by themselves within
// block.
func (q *Queue) waitShards(ctx context.Context, model string, after Bells, block time.Duration) (bool, error) {
	tags := q.ShardTags(model)
	type res struct {
		ok  bool
		err error
	}
	ch := make(chan res, len(tags))
	for i, t := range tags {
		a := "0-0"
		if i < len(after.ids) && after.ids[i] != "" {
			a = after.ids[i]
		}
		go func() {
			ok, err := q.waitBell(ctx, rkey.ShardBellKey(t, model), a, block)
			ch <- res{ok, err}
		}()
	}
	var firstErr error
	for range tags {
		r := <-ch
		if r.ok {
			return true, nil
		}
		if r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	return false, firstErr
}

// waitBell blocks up to block until the bell stream has an entry after `after`.
func (q *Queue) waitBell(ctx context.Context, bell, after string, block time.Duration) (bool, error) {
	res, err := q.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{bell, after}, Count: 1, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, translate(err)
	}
	return len(res) > 0, nil
}
