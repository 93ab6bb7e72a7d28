package redisq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rconn"
)

// Durable runs the writes whose loss at a failover would lose a job or money
// (enqueue, completion, settlement) so that the reply waits for replicas.
//
// Redis replication is asynchronous: a master acknowledges a write before
// its replicas have it, and a replica promoted after the master died lacks
// the writes it had not received. WAIT n t blocks until n replicas
// acknowledged every write made earlier ON THE SAME CONNECTION (Redis tracks
// the replication offset per client), or t passed. It cannot run inside a
// Lua script, and a cluster client would send it to every shard on pooled
// connections, where it says nothing about this write. So the write and the
// WAIT run on one connection borrowed from the pool of the master that
// serves the key's slot.
//
// A WAIT that times out (fewer replicas acknowledged) does not fail the
// write: it exists on the master and answering an error would make the
// client retry and pay twice. It is counted (Timeouts, exported as
// sluice_redis_wait_timeouts_total) and the write is only as durable as
// without WAIT.
type Durable struct {
	rdb      redis.UniversalClient
	replicas int
	timeout  time.Duration
	log      *slog.Logger
	timeouts atomic.Int64
}

// NewDurable wraps rdb. replicas 0 turns WAIT off: writes run on rdb as
// they would without a Durable. timeout bounds each WAIT.
func NewDurable(rdb redis.UniversalClient, replicas int, timeout time.Duration, log *slog.Logger) *Durable {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Durable{rdb: rdb, replicas: replicas, timeout: timeout, log: log}
}

// Enabled reports whether writes wait for replicas.
func (d *Durable) Enabled() bool { return d != nil && d.replicas > 0 }

// Timeouts returns how many WAITs ended with fewer replicas than asked.
func (d *Durable) Timeouts() int64 {
	if d == nil {
		return 0
	}
	return d.timeouts.Load()
}

// pinAttempts bounds the tries of a write the server refused before running
// it (the slot moved, the cluster is failing over, the master is gone): a
// retry cannot run it twice.
const pinAttempts = 3

// Do runs write and then WAIT on one connection to the master that serves
// key. write must touch only key's slot (Sluice's scripts do) and must
// return its commands' error. With WAIT off, write runs on the client
// itself (pooled, routed by the cluster client).
func (d *Durable) Do(ctx context.Context, key string, write func(c redis.Cmdable) error) error {
	if !d.Enabled() {
		return write(d.rdb)
	}
	var err error
	for attempt := range pinAttempts {
		if attempt > 0 {
			t := time.NewTimer(time.Duration(50<<attempt) * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
		}
		var retry bool
		retry, err = d.once(ctx, key, write)
		if c, ok := d.rdb.(*redis.ClusterClient); ok && (retry || rconn.FailoverError(err)) {
			// The pinned connection bypasses the cluster client's own
			// handling (rconn's reload hook): the slot map may be stale.
			c.ReloadState(ctx)
		}
		if !retry {
			return err
		}
	}
	return err
}

// once is one try of Do; retry says the server refused the write unrun.
func (d *Durable) once(ctx context.Context, key string, write func(c redis.Cmdable) error) (retry bool, err error) {
	var node *redis.Client
	switch c := d.rdb.(type) {
	case *redis.ClusterClient:
		if node, err = c.MasterForKey(ctx, key); err != nil {
			return notRun(err), err
		}
	case *redis.Client:
		node = c
	default: // a ring or sentinel-failover client: no pinning, no WAIT
		return false, write(d.rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	if err := write(conn); err != nil {
		return notRun(err), err
	}
	n, err := conn.Do(ctx, "WAIT", d.replicas, d.timeout.Milliseconds()).Int64()
	if err != nil {
		// The write ran but the master went before confirming it: like any
		// write whose reply was lost, it may or may not survive, so the
		// caller hears an error (enqueue answers 503; completion and
		// settlement, which are idempotent, are retried).
		d.log.WarnContext(ctx, "redis WAIT failed after the write", slog.String("node", node.Options().Addr), slog.String("err", err.Error()))
		return false, fmt.Errorf("redis WAIT: %w", err)
	}
	if n < int64(d.replicas) {
		d.timeouts.Add(1)
		d.log.DebugContext(ctx, "redis WAIT timed out", slog.String("node", node.Options().Addr), slog.Int64("acked", n), slog.Int("want", d.replicas))
	}
	return false, nil
}

// Pipelined queues one command per key (queue(p, i) adds key i's) and runs
// them pipelined: with WAIT on, grouped by the master serving each key,
// each group on one connection pinned to its master and followed by one
// WAIT. It returns each command's error (nil where it ran and, with WAIT
// on, was confirmed or timed out). Unlike Do it does not retry: its callers
// (settlement) run again, idempotently, what failed.
func (d *Durable) Pipelined(ctx context.Context, keys []string, queue func(p redis.Pipeliner, i int) redis.Cmder) []error {
	errs := make([]error, len(keys))
	run := func(p redis.Pipeliner, idx []int) {
		cmds := make([]redis.Cmder, len(idx))
		for j, i := range idx {
			cmds[j] = queue(p, i)
		}
		p.Exec(ctx) //nolint:errcheck // per-command errors are read below
		for j, i := range idx {
			errs[i] = cmds[j].Err()
		}
	}
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	if !d.Enabled() || len(keys) == 0 {
		run(d.rdb.Pipeline(), all)
		return errs
	}
	groups := map[*redis.Client][]int{}
	switch c := d.rdb.(type) {
	case *redis.ClusterClient:
		for i, k := range keys {
			node, err := c.MasterForKey(ctx, k)
			if err != nil {
				errs[i] = err
				continue
			}
			groups[node] = append(groups[node], i)
		}
	case *redis.Client:
		groups[c] = all
	default:
		run(d.rdb.Pipeline(), all)
		return errs
	}
	for node, idx := range groups {
		conn := node.Conn()
		run(conn.Pipeline(), idx)
		n, err := conn.Do(ctx, "WAIT", d.replicas, d.timeout.Milliseconds()).Int64()
		conn.Close()
		switch {
		case err != nil:
			for _, i := range idx {
				if errs[i] == nil {
					errs[i] = fmt.Errorf("redis WAIT: %w", err)
				}
			}
		case n < int64(d.replicas):
			d.timeouts.Add(1)
		}
	}
	if c, ok := d.rdb.(*redis.ClusterClient); ok && slices.ContainsFunc(errs, rconn.FailoverError) {
		c.ReloadState(ctx) // as in Do: pinned connections bypass rconn's reload hook
	}
	return errs
}

// notRun reports whether err says the server refused a command without
// running it: a redirect (the slot moved to another master), a cluster that
// cannot serve now, or a connection that could not be made.
func notRun(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY", "MASTERDOWN"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// String describes the setting, for logs.
func (d *Durable) String() string {
	if !d.Enabled() {
		return "off"
	}
	return fmt.Sprintf("%d replica(s), %s", d.replicas, d.timeout)
}
