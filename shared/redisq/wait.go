package redisq

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// Waiting for a job's result events without a connection per waiter.
//
// A synchronous request waits for its job's result stream. One XREAD BLOCK
// per waiter holds one Redis connection for the whole wait: 2,000 slow
// streams through two submit instances opened 2,023 connections, and Redis
// refuses clients past maxclients (10,000 by default). So a process's waits
// share a hub:
//
//   - Every script that appends to a result stream also SPUBLISHes the
//     stream's key on its tag's shard channel (rkey.ResultChannel). The hub
//     holds one subscription connection per tag on a cluster (go-redis routes
//     a shard subscription by its first channel's slot and resubscribes all of
//     a connection's channels in one command, which a cluster refuses across
//     slots), one for the whole process on a single node. That is bounded by
//     the tags in use (models × shards), never by the waiters.
//   - A notice wakes the stream's waiters, which read with a non-blocking
//     XREAD from the pool; at most WaitReaders such reads run at once, so the
//     pool lends them at most that many connections.
//   - No lost wake-up: a waiter is registered (and its channel subscribed)
//     before its first read, and every subscription confirmation — the first
//     one and each one after go-redis reconnects — wakes all the waiters of
//     that channel, so whatever was appended while the subscription was not
//     yet (or no longer) live is read then. A notice that comes while a
//     waiter reads is kept (a one-slot buffer) and causes one more read. A
//     slow safety poll (WaitPoll) re-reads even so.
//   - No added latency at low load: the first WaitDirect waiters of a process
//     block on a connection of their own exactly as before (the reply carries
//     the events, no notice-then-read round trip); only waits beyond those
//     share notices. Connections for waits: at most WaitDirect + WaitReaders +
//     subscriptions, whatever the number of waiters.
//
// The alternative of one XREAD BLOCK per tag over all its waiting streams
// was rejected: each event ends the read, and re-issuing it names every
// waiting stream again, so Redis's work per event grows with the waiters
// (2,000 streams × 2,000 keys per event); a notice costs O(1).

// subLinger is how long a tag's subscription outlives its last waiter, so
// steady traffic does not subscribe and unsubscribe for every request.
const subLinger = time.Minute

// Watch follows one job's result stream for a waiter. Its Next is called
// from one goroutine at a time; Close deregisters it.
type Watch struct {
	q      *Queue
	key    string // the result stream
	ch     string // its shard channel
	note   chan struct{}
	direct bool // holds a slot of Options.WaitDirect: blocks on its own connection
	dirty  bool // something may have been appended since the last read
	closed bool
}

// hub is a process's shared subscription state: the waiters by result stream
// and the subscriptions by group (tag on a cluster, "" on a single node).
type hub struct {
	rdb     redis.UniversalClient
	cluster bool
	direct  chan struct{} // semaphore of direct waiters
	readers chan struct{} // semaphore of concurrent notified reads

	mu      sync.Mutex
	waiters map[string]map[*Watch]struct{}
	chans   map[string]*chanState // by channel
	subs    map[string]*subConn   // by group
	janitor bool                  // the linger janitor is running
}

type chanState struct {
	group string
	n     int       // registered waiters
	idle  time.Time // when n last fell to 0
}

type subConn struct {
	ps *redis.PubSub
}

func newHub(rdb redis.UniversalClient, o Options) *hub {
	return &hub{
		rdb: rdb, cluster: rconn.IsCluster(rdb),
		direct:  make(chan struct{}, max(o.WaitDirect, 0)),
		readers: make(chan struct{}, o.WaitReaders),
		waiters: map[string]map[*Watch]struct{}{},
		chans:   map[string]*chanState{},
		subs:    map[string]*subConn{},
	}
}

// Watch registers a waiter for a job's result events. It subscribes the
// job's tag if no waiter of this process has yet; call Close when done.
func (q *Queue) Watch(jobID string) *Watch {
	h := q.hub
	w := &Watch{q: q, key: rkey.ResultKey(jobID), ch: rkey.ResultChannel(jobID), note: make(chan struct{}, 1), dirty: true}
	select {
	case h.direct <- struct{}{}:
		w.direct = true
		return w
	default:
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.waiters[w.key]
	if ws == nil {
		ws = map[*Watch]struct{}{}
		h.waiters[w.key] = ws
	}
	ws[w] = struct{}{}
	cs := h.chans[w.ch]
	if cs == nil {
		group := ""
		if h.cluster {
			group = w.ch
		}
		cs = &chanState{group: group}
		h.chans[w.ch] = cs
		h.subscribe(group, w.ch)
	}
	cs.n++
	return w
}

// subscribe adds ch to its group's subscription, opening the group's
// connection if needed; h.mu is held. Its confirmation wakes the channel's
// waiters (receive).
func (h *hub) subscribe(group, ch string) {
	ctx := context.Background()
	s := h.subs[group]
	if s == nil {
		// Subscribing before the receive loop starts matters on a cluster:
		// a PubSub connects on first use, to the master of its first
		// channel's slot, or to a random node when it has none yet.
		s = &subConn{ps: h.rdb.SSubscribe(ctx, ch)}
		h.subs[group] = s
		go h.receive(group, s)
		if !h.janitor {
			h.janitor = true
			go h.sweep()
		}
		return
	}
	// An error here is a broken connection: go-redis reconnects and
	// resubscribes every channel it was asked for, and that confirmation
	// wakes the waiters.
	if err := s.ps.SSubscribe(ctx, ch); err != nil {
		slog.Warn("redisq: result channel subscribe", slog.String("channel", ch), slog.String("err", err.Error()))
	}
}

// receive turns a subscription's messages into wake-ups until it is closed.
func (h *hub) receive(group string, s *subConn) {
	for m := range s.ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(5 * time.Second)) {
		switch m := m.(type) {
		case *redis.Message:
			h.wake(m.Payload)
		case *redis.Subscription:
			switch m.Kind {
			case "ssubscribe": // first subscription or after a reconnect: appends may have been missed
				h.wakeChannel(m.Channel)
			case "sunsubscribe":
				h.lost(group, s, m.Channel)
			}
		}
	}
}

// lost handles a shard channel the server unsubscribed: ours (sweep), or
// the server's when its slot moved to another master (failover, resharding).
// A channel still wanted gets a fresh connection, which goes to the slot's
// current master.
func (h *hub) lost(group string, s *subConn, ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.chans[ch] == nil || h.subs[group] != s {
		return
	}
	var chans []string
	for c, cs := range h.chans {
		if cs.group == group {
			chans = append(chans, c)
		}
	}
	s.ps.Close() //nolint:errcheck // being replaced
	delete(h.subs, group)
	for _, c := range chans {
		h.subscribe(group, c)
	}
}

// wake tells the waiters of one result stream that it grew.
func (h *hub) wake(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.waiters[key] {
		w.poke()
	}
}

// wakeChannel wakes every waiter of a channel.
func (h *hub) wakeChannel(ch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ws := range h.waiters {
		for w := range ws {
			if w.ch == ch {
				w.poke()
			}
		}
	}
}

func (w *Watch) poke() {
	select {
	case w.note <- struct{}{}:
	default: // a wake-up is already pending; one read sees both appends
	}
}

// sweep unsubscribes channels that have had no waiter for subLinger, and
// closes a group's connection once it has no channel left.
func (h *hub) sweep() {
	t := time.NewTicker(subLinger / 4)
	defer t.Stop()
	for range t.C {
		h.mu.Lock()
		for ch, cs := range h.chans {
			if cs.n > 0 || time.Since(cs.idle) < subLinger {
				continue
			}
			delete(h.chans, ch)
			if s := h.subs[cs.group]; s != nil {
				s.ps.SUnsubscribe(context.Background(), ch) //nolint:errcheck // a broken connection drops it anyway
			}
		}
		for g, s := range h.subs {
			used := false
			for _, cs := range h.chans {
				used = used || cs.group == g
			}
			if !used {
				s.ps.Close() //nolint:errcheck
				delete(h.subs, g)
			}
		}
		done := len(h.subs) == 0
		if done {
			h.janitor = false
		}
		h.mu.Unlock()
		if done {
			return
		}
	}
}

// WaitStats is a snapshot of a process's shared waits.
type WaitStats struct {
	Waiting       int // waiters sharing notices (direct ones not counted)
	Subscriptions int // subscription connections held
}

// WaitStats reports the shared waits (tests, diagnostics).
func (q *Queue) WaitStats() WaitStats {
	h := q.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	st := WaitStats{Subscriptions: len(h.subs)}
	for _, ws := range h.waiters {
		st.Waiting += len(ws)
	}
	return st
}

// Close deregisters the waiter. Idempotent.
func (w *Watch) Close() {
	if w.closed {
		return
	}
	w.closed = true
	h := w.q.hub
	if w.direct {
		<-h.direct
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ws := h.waiters[w.key]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(h.waiters, w.key)
		}
	}
	if cs := h.chans[w.ch]; cs != nil {
		cs.n--
		if cs.n == 0 {
			cs.idle = time.Now()
		}
	}
}

// Next returns the result events after the id `after` ("0" for all),
// waiting for at least one; it returns ctx's error when ctx ends first.
func (w *Watch) Next(ctx context.Context, after string) ([]Event, error) {
	if w.direct {
		return w.nextDirect(ctx, after)
	}
	poll := time.NewTimer(w.q.opts.WaitPoll)
	defer poll.Stop()
	for {
		if w.dirty {
			evs, full, err := w.read(ctx, after)
			if err != nil {
				return nil, err
			}
			w.dirty = full // a full page: there may be more
			if len(evs) > 0 {
				return evs, nil
			}
		}
		select {
		case <-w.note:
		case <-poll.C:
			poll.Reset(w.q.opts.WaitPoll)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		w.dirty = true
	}
}

// read is one non-blocking XREAD, at most WaitReaders of them at once.
func (w *Watch) read(ctx context.Context, after string) (evs []Event, full bool, err error) {
	h := w.q.hub
	select {
	case h.readers <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	defer func() { <-h.readers }()
	// Block -1: no BLOCK argument (0 would block for ever).
	res, err := w.q.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{w.key, after}, Block: -1, Count: eventPage}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, ctxErr(ctx, translate(err))
	}
	evs = toEvents(res)
	return evs, len(evs) == eventPage, nil
}

// nextDirect blocks on a connection of its own. Blocking reads are capped at
// directBlock so a waiter whose caller went away (go-redis does not abort a
// blocked read on cancellation) frees its connection soon after.
func (w *Watch) nextDirect(ctx context.Context, after string) ([]Event, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		block := directBlock
		if d, ok := ctx.Deadline(); ok {
			block = min(block, time.Until(d))
		}
		if block < time.Millisecond {
			block = time.Millisecond // BLOCK 0 would wait for ever
		}
		res, err := w.q.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{w.key, after}, Block: block, Count: eventPage}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, ctxErr(ctx, translate(err))
		}
		if evs := toEvents(res); len(evs) > 0 {
			return evs, nil
		}
	}
}

// directBlock bounds one blocking read of a direct waiter.
const directBlock = 2 * time.Second

// eventPage is the most events one read returns.
const eventPage = 256

// ctxErr prefers the context's own error: a read cut short by the
// caller's deadline or departure is that, not a Redis failure.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func toEvents(res []redis.XStream) []Event {
	var out []Event
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, toEvent(m))
		}
	}
	return out
}
