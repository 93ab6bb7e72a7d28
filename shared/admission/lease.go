package admission

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a synchronous request's concurrency lease, kept alive by its
// process's keeper until released. A nil *Lease (no lease) releases
// nothing. Its methods are for the request's own goroutine.
type Lease struct {
	a        *Admitter
	key, job string
	released bool
}

// Release stops refreshing the lease and gives the slot back now.
func (l *Lease) Release(ctx context.Context) {
	if l == nil || l.released {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	pipe := l.a.rdb.Pipeline()
	l.ReleaseIn(ctx, pipe)
	pipe.Exec(ctx) //nolint:errcheck // else it lapses within the lease ttl
}

// ReleaseIn stops refreshing the lease and queues the slot's release on
// pipe, so the caller sends it in the same round trip as its own commands
// (the answer's, before the answer leaves). A pipeline that fails leaves
// the lease to lapse within the lease ttl.
func (l *Lease) ReleaseIn(ctx context.Context, pipe redis.Pipeliner) {
	if l == nil || l.released {
		return
	}
	l.released = true
	l.a.keeper.remove(l)
	pipe.ZRem(ctx, l.key, l.job)
}

// Handoff returns the lease for another goroutine to release, and leaves
// this one released, no longer refreshed. For a lease already released in
// Redis (the worker's completion did it) whose final release runs after
// the request's handler returned; nil for none.
func (l *Lease) Handoff() *Lease {
	if l == nil || l.released {
		return nil
	}
	l.released = true
	l.a.keeper.remove(l)
	return &Lease{a: l.a, key: l.key, job: l.job}
}

// keeper refreshes every live lease of the process, one pipeline of
// lease.lua per tick (a third of admission.lease_ttl), instead of a
// goroutine and a ticker per request whose stop waited for that goroutine
// on the answer's path. Its goroutine runs while there are leases to keep.
// Refreshing early is harmless (lease.lua extends by Redis's clock and never
// re-creates a released lease), so one tick for all keeps each lease's
// bound: refreshed within a third of its ttl of being taken or refreshed.
type keeper struct {
	mu      sync.Mutex
	live    map[*Lease]struct{}
	running bool
}

func (k *keeper) add(a *Admitter, l *Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.live == nil {
		k.live = make(map[*Lease]struct{})
	}
	k.live[l] = struct{}{}
	if !k.running {
		k.running = true
		go k.run(a)
	}
}

func (k *keeper) remove(l *Lease) {
	k.mu.Lock()
	delete(k.live, l)
	k.mu.Unlock()
}

// keepBatch bounds one pipeline's commands.
const keepBatch = 512

func (k *keeper) run(a *Admitter) {
	ttl := a.cfg.Admission.LeaseTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	var ls []*Lease
	for range tick.C {
		k.mu.Lock()
		if len(k.live) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		ls = ls[:0]
		for l := range k.live {
			ls = append(ls, l)
		}
		k.mu.Unlock()
		for i := 0; i < len(ls); i += keepBatch {
			k.refresh(a, ls[i:min(i+keepBatch, len(ls))], ttl)
		}
		clear(ls) // hold no released lease until the next tick
	}
}

// refresh extends ls in one pipeline; a script Redis lost (restart,
// failover) is loaded and the pipeline sent once more. A miss only
// shortens a lease.
func (k *keeper) refresh(a *Admitter, ls []*Lease, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
	defer cancel()
	for try := 0; try < 2; try++ {
		pipe := a.rdb.Pipeline()
		for _, l := range ls {
			leaseScript.EvalSha(ctx, pipe, []string{l.key}, l.job, ttl.Milliseconds())
		}
		cmds, _ := pipe.Exec(ctx)
		lost := false
		for _, c := range cmds {
			if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				lost = true
				break
			}
		}
		if !lost || leaseScript.Load(ctx, a.rdb).Err() != nil {
			return
		}
	}
}
