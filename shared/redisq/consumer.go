package redisq

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// Message is one stream entry a Consumer delivered.
type Message struct {
	Stream string
	ID     string
	Values map[string]any
}

// Field returns one of the entry's fields ("" if absent).
func (m Message) Field(name string) string {
	s, _ := m.Values[name].(string)
	return s
}

// Entry is the message as a job-stream entry (its "job" field names the job).
func (m Message) Entry() Entry { return Entry{Stream: m.Stream, ID: m.ID, JobID: m.Field("job")} }

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	Group, Name string   // consumer group, and this consumer's name in it
	Streams     []string // read in this order (earlier streams first)
	Count       int64    // entries per read, per stream (and per autoclaim); default 100
	Block       time.Duration
	// ClaimIdle is how long an entry stays unacknowledged before it counts
	// as left by a dead consumer and is taken over (XAUTOCLAIM's min-idle).
	ClaimIdle time.Duration
	// ClaimEvery is how often dead consumers' entries are looked for: at the
	// start, then every ClaimEvery; 0 takes ClaimIdle/2.
	ClaimEvery time.Duration
	// OwnPendingFirst hands this consumer's own unacknowledged entries (a
	// restart under the same name) to the handler before anything else.
	OwnPendingFirst bool
	// EachPass, if set, runs at the start of every pass, before claiming
	// and reading (a pass lasts at most Block when the streams are idle).
	EachPass func(context.Context)
	// Linger is how long the consumer waits after handling a batch smaller
	// than Count before it reads again, so entries that arrive meanwhile
	// are handled together: at a low rate every entry would otherwise be a
	// batch of its own (a PostgreSQL transaction, a pipeline and a wake-up
	// each). An entry waits at most Linger plus one batch's handling. 0: none.
	Linger time.Duration
}

// Consumer reads streams through a consumer group: its own pending entries
// first when asked, dead consumers' entries at the configured cadence, then
// new entries. An entry stays pending until the handler acks it (Ack), so a
// crash before the ack hands it to this consumer again on restart, or to
// another one after ClaimIdle: at least once; handlers make their effect
// idempotent and ack after it is durable.
type Consumer struct {
	rdb redis.UniversalClient
	o   ConsumerOptions
	log *slog.Logger
}

// Consumer returns a consumer on the queue's Redis; Run starts it.
func (q *Queue) Consumer(o ConsumerOptions, log *slog.Logger) *Consumer {
	return NewConsumer(q.rdb, o, log)
}

// NewConsumer returns a consumer on rdb, for a package that holds no Queue.
func NewConsumer(rdb redis.UniversalClient, o ConsumerOptions, log *slog.Logger) *Consumer {
	if o.Count <= 0 {
		o.Count = 100
	}
	if o.Block <= 0 {
		o.Block = time.Second
	}
	if o.ClaimEvery <= 0 {
		o.ClaimEvery = o.ClaimIdle / 2
	}
	if log == nil {
		log = slog.Default()
	}
	return &Consumer{rdb: rdb, o: o, log: log.With(slog.String("group", o.Group))}
}

// Run hands batches of entries to handle until ctx ends. It creates the
// groups (and streams) first, retrying each second while Redis refuses, and
// again whenever a stream or group has vanished (NOGROUP). A read that
// fails is logged and retried after a second. handle runs on Run's
// goroutine; the next batch is read when it returns.
func (c *Consumer) Run(ctx context.Context, handle func(context.Context, []Message)) {
	ready, pendingDone := false, !c.o.OwnPendingFirst
	var lastClaim time.Time
	for ctx.Err() == nil {
		if !ready {
			if err := c.ensure(ctx); err != nil {
				if ctx.Err() == nil {
					c.log.WarnContext(ctx, "consumer group not created; retrying", slog.String("err", err.Error()))
					sluice.Sleep(ctx, time.Second)
				}
				continue
			}
			ready = true
		}
		if !pendingDone {
			if err := c.ownPending(ctx, handle); err != nil {
				ready = !isNoGroup(err)
				c.failed(ctx, "pending read failed", err)
				continue
			}
			pendingDone = true
		}
		if c.o.EachPass != nil {
			c.o.EachPass(ctx)
		}
		var batch []Message
		if c.o.ClaimIdle > 0 && time.Since(lastClaim) >= c.o.ClaimEvery {
			lastClaim = time.Now()
			ms, err := c.AutoClaim(ctx)
			if isNoGroup(err) {
				ready = false
				continue
			}
			batch = ms // other failures: the read below reports them
		}
		if len(batch) == 0 {
			ms, err := c.read(ctx)
			if err != nil {
				ready = !isNoGroup(err)
				c.failed(ctx, "stream read failed", err)
				continue
			}
			batch = ms
		}
		if len(batch) > 0 {
			handle(ctx, batch)
			if c.o.Linger > 0 && int64(len(batch)) < c.o.Count {
				sluice.Sleep(ctx, c.o.Linger)
			}
		}
	}
}

func (c *Consumer) failed(ctx context.Context, msg string, err error) {
	if ctx.Err() != nil {
		return
	}
	c.log.WarnContext(ctx, msg, slog.String("err", err.Error()))
	sluice.Sleep(ctx, time.Second)
}

// ensure creates the group on every stream (and the stream) if missing.
func (c *Consumer) ensure(ctx context.Context) error {
	for _, s := range c.o.Streams {
		if err := c.rdb.XGroupCreateMkStream(ctx, s, c.o.Group, "0").Err(); err != nil && !isBusyGroup(err) {
			return translate(err)
		}
	}
	return nil
}

// ownPending hands this consumer's own unacknowledged entries to handle,
// a page of Count per stream at a time, each once: an entry the handler
// leaves pending is not read again here but reclaimed after ClaimIdle.
func (c *Consumer) ownPending(ctx context.Context, handle func(context.Context, []Message)) error {
	for _, s := range c.o.Streams {
		after := "0"
		for ctx.Err() == nil {
			ms, err := c.xread(ctx, []string{s, after}, -1)
			if err != nil || len(ms) == 0 {
				return err
			}
			handle(ctx, ms)
			after = ms[len(ms)-1].ID
		}
	}
	return ctx.Err()
}

// AutoClaim takes up to Count entries per stream idle longer than ClaimIdle
// (their consumer died): they become this consumer's. It returns what it
// took before any failure, and the failure.
func (c *Consumer) AutoClaim(ctx context.Context) ([]Message, error) {
	var out []Message
	for _, s := range c.o.Streams {
		xs, _, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: s, Group: c.o.Group, Consumer: c.o.Name,
			MinIdle: c.o.ClaimIdle, Start: "0-0", Count: c.o.Count}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return out, rawOrTranslated(err)
		}
		for _, x := range xs {
			out = append(out, Message{Stream: s, ID: x.ID, Values: x.Values})
		}
	}
	return out, nil
}

// read takes new entries, waiting up to Block. A Redis Cluster serves one
// XREADGROUP from one slot only (CROSSSLOT otherwise), and the streams of
// several models live in several slots: there the streams are read per hash
// tag, first without waiting, then, if all were empty, waiting on every tag
// at once; an entry that arrives then is handed over when the slowest read
// returns, at most Block later.
func (c *Consumer) read(ctx context.Context) ([]Message, error) {
	groups := [][]string{c.o.Streams}
	if _, ok := c.rdb.(*redis.ClusterClient); ok {
		groups = byHashTag(c.o.Streams)
	}
	if len(groups) == 1 {
		return c.xread(ctx, newEntriesArgs(groups[0]), c.o.Block)
	}
	var out []Message
	var firstErr error
	for _, g := range groups {
		ms, err := c.xread(ctx, newEntriesArgs(g), -1)
		out = append(out, ms...)
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(out) > 0 || firstErr != nil {
		return out, nilIfAny(out, firstErr)
	}
	got := make([][]Message, len(groups))
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = c.xread(ctx, newEntriesArgs(g), c.o.Block)
		}()
	}
	wg.Wait()
	for i := range groups {
		out = append(out, got[i]...)
		if errs[i] != nil && firstErr == nil {
			firstErr = errs[i]
		}
	}
	return out, nilIfAny(out, firstErr)
}

// nilIfAny drops err when entries were read: they are delivered (pending
// for this consumer) and must be handled; the failure shows again on the
// next read.
func nilIfAny(ms []Message, err error) error {
	if len(ms) > 0 {
		return nil
	}
	return err
}

func newEntriesArgs(streams []string) []string {
	args := make([]string, 0, 2*len(streams))
	args = append(args, streams...)
	for range streams {
		args = append(args, ">")
	}
	return args
}

// byHashTag groups keys by their hash tag (what Redis Cluster hashes: the
// part between the first { and the next }, or the whole key), keeping
// their order; keys of one group share a slot.
func byHashTag(keys []string) [][]string {
	var out [][]string
	at := map[string]int{}
	for _, k := range keys {
		tag := k
		if i := strings.IndexByte(k, '{'); i >= 0 {
			if j := strings.IndexByte(k[i+1:], '}'); j > 0 {
				tag = k[i+1 : i+1+j]
			}
		}
		n, ok := at[tag]
		if !ok {
			n = len(out)
			at[tag] = n
			out = append(out, nil)
		}
		out[n] = append(out[n], k)
	}
	return out
}

func (c *Consumer) xread(ctx context.Context, args []string, block time.Duration) ([]Message, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: c.o.Group, Consumer: c.o.Name,
		Streams: args, Count: c.o.Count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, rawOrTranslated(err)
	}
	var out []Message
	for _, s := range res {
		for _, x := range s.Messages {
			out = append(out, Message{Stream: s.Stream, ID: x.ID, Values: x.Values})
		}
	}
	return out, nil
}

// Ack acknowledges and deletes handled entries, in one round trip.
func (c *Consumer) Ack(ctx context.Context, ms ...Message) error {
	if len(ms) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	for _, m := range ms {
		pipe.XAck(ctx, m.Stream, c.o.Group, m.ID)
		pipe.XDel(ctx, m.Stream, m.ID)
	}
	_, err := pipe.Exec(ctx)
	return translate(err)
}

// rawOrTranslated keeps NOGROUP recognisable (isNoGroup) and translates the rest.
func rawOrTranslated(err error) error {
	if isNoGroup(err) {
		return err
	}
	return translate(err)
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }
