package redisq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// sharded is a queue whose model is split over shards, with one user name
// per shard (users[s] hashes to shard s).
type sharded struct {
	q     *redisq.Queue
	rdb   redis.UniversalClient
	model string
	tags  []string
	users [][]string // users[s]: users whose jobs land in shard s
}

func setupSharded(t *testing.T, opts redisq.Options, perShard int) *sharded {
	t.Helper()
	rdb := testenv.Redis(t)
	b := &sharded{q: redisq.New(rdb, opts), rdb: rdb, model: testenv.Name("qs")}
	b.tags = b.q.ShardTags(b.model)
	if len(b.tags) != opts.Shards {
		t.Fatalf("%d tags for %d shards", len(b.tags), opts.Shards)
	}
	b.users = make([][]string, opts.Shards)
	for i, filled := 0, 0; filled < opts.Shards; i++ {
		u := fmt.Sprintf("user%d", i)
		s := rkey.UserShard(u, opts.Shards)
		if len(b.users[s]) < perShard {
			if b.users[s] = append(b.users[s], u); len(b.users[s]) == perShard {
				filled++
			}
		}
	}
	for _, s := range b.q.Streams(b.model, 2) {
		if err := b.q.EnsureGroup(context.Background(), s, group); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		del := func(ctx context.Context, c *redis.Client) error {
			for _, tag := range b.tags {
				keys, _ := c.Keys(ctx, "sluice:{m:"+tag+"}:*").Result()
				for _, k := range keys { // one by one: the keys of two tags are two slots
					c.Del(ctx, k)
				}
			}
			return nil
		}
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			cc.ForEachMaster(ctx, del) //nolint:errcheck // best effort
		} else if c, ok := rdb.(*redis.Client); ok {
			del(ctx, c) //nolint:errcheck // best effort
		}
	})
	return b
}

func (b *sharded) enqueue(t *testing.T, user string, prio int) *sluice.Job {
	t.Helper()
	j := &sluice.Job{ID: b.q.NewJobID(b.model, user), UserID: user, Model: b.model, Endpoint: sluice.EndpointChat,
		Body: json.RawMessage(`{"model":"x"}`), Priority: prio}
	if err := b.q.Enqueue(context.Background(), j, time.Minute); err != nil {
		t.Fatal(err)
	}
	return j
}

// shardOf is the shard whose stream an entry came from.
func (b *sharded) shardOf(t *testing.T, e redisq.Entry) int {
	t.Helper()
	for s, tag := range b.tags {
		for p := range 2 {
			if e.Stream == rkey.ShardStreamKey(tag, b.model, p) {
				return s
			}
		}
	}
	t.Fatalf("entry %+v is in no shard's stream", e)
	return -1
}

// TestShardedJobsLandInTheirUsersShard: a job id names its user's shard, and
// every key of the job is found from the id alone.
func TestShardedJobsLandInTheirUsersShard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupSharded(t, redisq.Options{Shards: 4}, 1)
	for s, us := range b.users {
		j := b.enqueue(t, us[0], 1)
		if rkey.JobTag(j.ID) != b.tags[s] {
			t.Fatalf("user %s's job %s is not in shard %d (%s)", us[0], j.ID, s, b.tags[s])
		}
		if n, _ := b.rdb.ZCard(ctx, rkey.ShardFairKey(b.tags[s], b.model, 1)).Result(); n != 1 {
			t.Fatalf("shard %d's fair queue holds %d jobs", s, n)
		}
	}
	// A job id of a shard the queue does not have is refused: no worker would read it.
	stray := &sluice.Job{ID: rkey.NewUserJobID(b.model, "x", 64), UserID: "x", Model: b.model, Priority: 1}
	for _, tag := range b.tags {
		if rkey.JobTag(stray.ID) == tag {
			t.Skip("the stray id fell in a shard")
		}
	}
	if err := b.q.Enqueue(ctx, stray, time.Minute); err == nil {
		t.Fatal("a job id outside the shards was enqueued")
	}
	bl, err := b.q.Backlog(ctx, b.model, 2)
	if err != nil || bl[1].Queued != 4 {
		t.Fatalf("backlog over the shards: %+v %v", bl, err)
	}
}

// TestShardedFairness: backlogged users of different shards share a claim
// round equally, users of one shard take turns within it, and each user's
// jobs come in their order.
func TestShardedFairness(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupSharded(t, redisq.Options{Shards: 3}, 2)
	order := map[string][]string{} // user → job ids in enqueue order
	for range 6 {
		for _, us := range b.users {
			for _, u := range us {
				order[u] = append(order[u], b.enqueue(t, u, 1).ID)
			}
		}
	}
	claimed := map[string]int{} // user → jobs claimed so far
	owner := map[string]string{}
	for u, ids := range order {
		for _, id := range ids {
			owner[id] = u
		}
	}
	for round := range 4 {
		// 6 slots, 3 busy shards: 2 from each, so one from each of its two users.
		es, _, err := b.q.Claim(ctx, group, "w", b.model, 2, 6, false)
		if err != nil || len(es) != 6 {
			t.Fatalf("round %d: %d entries, %v", round, len(es), err)
		}
		perShard := map[int]int{}
		for _, e := range es {
			u := owner[e.JobID]
			perShard[b.shardOf(t, e)]++
			if want := order[u][claimed[u]]; e.JobID != want {
				t.Fatalf("round %d: user %s's job %s came before %s", round, u, e.JobID, want)
			}
			claimed[u]++
		}
		for s := range b.tags {
			if perShard[s] != 2 {
				t.Fatalf("round %d: shard %d gave %d of 6 (%v)", round, s, perShard[s], perShard)
			}
		}
		for u, n := range claimed {
			if n != round+1 {
				t.Fatalf("round %d: user %s has had %d turns (%v)", round, u, n, claimed)
			}
		}
	}
}

// TestShardedClaimFillsTheBatch: a worker takes from every shard, including
// when the rotating first shards are empty, and wakes on an enqueue to any
// shard.
func TestShardedClaimFillsTheBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupSharded(t, redisq.Options{Shards: 6}, 1)
	// One job in one shard: whichever shard a claim of one starts at, it finds it.
	for s := range b.tags {
		j := b.enqueue(t, b.users[s][0], 1)
		es, _, err := b.q.Claim(ctx, group, "w", b.model, 2, 1, false)
		if err != nil || len(es) != 1 || es[0].JobID != j.ID {
			t.Fatalf("shard %d: %v %v", s, es, err)
		}
	}
	// Five jobs all in one shard fill a batch of five.
	for range 5 {
		b.enqueue(t, b.users[4][0], 0)
	}
	es, bells, err := b.q.Claim(ctx, group, "w", b.model, 2, 5, false)
	if err != nil || len(es) != 5 {
		t.Fatalf("batch of 5 from one shard: %d %v", len(es), err)
	}
	if len(bells.IDs()) != 6 || bells.Drained {
		t.Fatalf("bells = %+v", bells)
	}
	es, bells, err = b.q.Claim(ctx, group, "w", b.model, 2, 8, false)
	if err != nil || len(es) != 0 || !bells.Drained {
		t.Fatalf("empty queue: %v %+v %v", es, bells, err)
	}
	if ok, err := b.q.WaitWork(ctx, b.model, bells, 10*time.Millisecond); ok || err != nil {
		t.Fatalf("woke with nothing enqueued: %v %v", ok, err)
	}
	for s := range b.tags {
		b.enqueue(t, b.users[s][0], 1)
		if ok, err := b.q.WaitWork(ctx, b.model, bells, 5*time.Second); !ok || err != nil {
			t.Fatalf("an enqueue to shard %d did not wake the worker: %v", s, err)
		}
		es, bells, err = b.q.Claim(ctx, group, "w", b.model, 2, 8, false)
		if err != nil || len(es) != 1 || b.shardOf(t, es[0]) != s {
			t.Fatalf("shard %d: %v %v", s, es, err)
		}
	}
}

// TestShardedReclaimAndCancel: a killed consumer's jobs in every shard are
// reclaimed by another, run their attempts, dead-letter into their own
// shard; a cancelled queued job in any shard is never run.
func TestShardedReclaimAndCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupSharded(t, redisq.Options{Shards: 3, MaxAttempts: 2}, 1)
	jobs := map[string]int{}
	for s := range b.tags {
		jobs[b.enqueue(t, b.users[s][0], 1).ID] = s
	}
	es, _, err := b.q.Claim(ctx, group, "dead-1", b.model, 2, 3, false)
	if err != nil || len(es) != 3 {
		t.Fatalf("claim: %v %v", es, err)
	}
	for _, e := range es {
		if out, _, err := b.q.Start(ctx, e, group, "dead-1", b.model); out != redisq.StartRun {
			t.Fatalf("start: %s %v", out, err)
		}
	}
	// dead-1 is killed: w2 takes its entries from every shard's stream.
	time.Sleep(10 * time.Millisecond)
	var got []redisq.Entry
	for _, s := range b.q.Streams(b.model, 2) {
		es, err := b.q.AutoClaim(ctx, group, "w2", s, 5*time.Millisecond, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, es...)
	}
	if len(got) != 3 {
		t.Fatalf("reclaimed %d of 3: %v", len(got), got)
	}
	for _, e := range got {
		if b.shardOf(t, e) != jobs[e.JobID] {
			t.Fatalf("job %s reclaimed from the wrong shard", e.JobID)
		}
		out, c, err := b.q.Start(ctx, e, group, "w2", b.model)
		if out != redisq.StartRun || c.Attempt != 2 {
			t.Fatalf("second attempt: %s %+v %v", out, c, err)
		}
	}
	// w2 dies too: the third claim dead-letters each job in its shard.
	time.Sleep(10 * time.Millisecond)
	for _, s := range b.q.Streams(b.model, 2) {
		es, _ := b.q.AutoClaim(ctx, group, "w3", s, 5*time.Millisecond, 10)
		for _, e := range es {
			if out, _, err := b.q.Start(ctx, e, group, "w3", b.model); out != redisq.StartDead {
				t.Fatalf("want dead-letter, got %s %v", out, err)
			}
		}
	}
	for s, tag := range b.tags {
		if n, _ := b.rdb.XLen(ctx, rkey.ShardDeadKey(tag, b.model)).Result(); n != 1 {
			t.Fatalf("shard %d's dead letters: %d", s, n)
		}
	}

	// Cancel: a queued job in each shard, cancelled, is dropped when claimed.
	var cancelled []string
	for s := range b.tags {
		j := b.enqueue(t, b.users[s][0], 0)
		st, err := b.q.Cancel(ctx, j.ID, b.users[s][0])
		if err != nil || st != sluice.JobCancelled {
			t.Fatalf("cancel in shard %d: %s %v", s, st, err)
		}
		cancelled = append(cancelled, j.ID)
	}
	es, _, err = b.q.Claim(ctx, group, "w4", b.model, 2, 10, false)
	if err != nil || len(es) != 3 {
		t.Fatalf("claim the cancelled: %v %v", es, err)
	}
	for _, r := range b.q.StartMany(ctx, es, group, "w4", b.model) {
		if r.Outcome != redisq.StartCancelled && r.Outcome != redisq.StartDone {
			t.Fatalf("a cancelled job started: %+v", r)
		}
	}
	for _, id := range cancelled {
		if js, err := b.q.Get(ctx, id, ""); err != nil || js.Status != sluice.JobCancelled {
			t.Fatalf("job %s: %+v %v", id, js, err)
		}
	}
}
