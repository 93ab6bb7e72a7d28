package authn

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// Ended sessions: an access token is self-contained and lives
// auth.identity.access_ttl, so a logout, a disabled user or a deleted
// account must be remembered for that long (plus leeway) for its tokens to
// stop at once. The record lives in Redis (rkey.RevokedSessionsKey), so an
// instance that starts later, or missed a pub/sub message, still knows it:
// every verifier loads the set when it (re)subscribes and at least once per
// its cache TTL while it serves tokens; the message on AuthEvictChannel only
// makes it faster.

// EndSession records that a login (refresh family) ended and tells every
// instance: its access tokens are refused from now on. ttl is the access
// token lifetime plus leeway. This verifier's copy has it before the call
// returns, so the instance that ended a login refuses its tokens from its
// next request on, without waiting for its own subscription to bring the
// message back (on a Redis Cluster that crosses the cluster bus; a request
// right after the logout could still pass). The other instances refuse
// them once the message reaches them, at the latest at their next load of
// the set (within the cache TTL).
func (v *Verifier) EndSession(ctx context.Context, rdb redis.UniversalClient, sessionID string, ttl time.Duration) error {
	return v.endSessions(ctx, rdb, "s:"+sessionID, ttl)
}

// EndUserSessions records that every access token issued to a user until
// now is refused (disabled, deleted) and tells every instance; this
// verifier's copy has it at once (see EndSession).
func (v *Verifier) EndUserSessions(ctx context.Context, rdb redis.UniversalClient, userID string, ttl time.Duration) error {
	return v.endSessions(ctx, rdb, "u:"+userID, ttl)
}

// endSessions records member as ended now in Redis, applies it to this
// verifier's copy once recorded (whatever becomes of the message), and
// publishes it.
func (v *Verifier) endSessions(ctx context.Context, rdb redis.UniversalClient, member string, ttl time.Duration) error {
	now := time.Now().UnixMilli()
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, rkey.RevokedSessionsKey, redis.Z{Score: float64(now), Member: member})
		p.ZRemRangeByScore(ctx, rkey.RevokedSessionsKey, "-inf", "("+strconv.FormatInt(now-ttl.Milliseconds(), 10))
		p.PExpire(ctx, rkey.RevokedSessionsKey, ttl)
		return nil
	})
	if err != nil {
		return err
	}
	v.ended.add(member, now)
	return rdb.Publish(ctx, rkey.AuthEvictChannel, "ended:"+member+"@"+strconv.FormatInt(now, 10)).Err()
}

// ended is a verifier's copy of the ended sessions.
type ended struct {
	mu       sync.Mutex
	rdb      redis.UniversalClient // nil until Listen runs: nothing to load
	sessions map[string]int64      // session id → revoked at (Unix ms)
	users    map[string]int64      // user id → sessions ended at (Unix ms)
	loadedAt time.Time
	loading  bool
}

// add applies one record ("s:<id>" or "u:<id>" at ms).
func (e *ended) add(member string, at int64) {
	kind, id, ok := strings.Cut(member, ":")
	if !ok || id == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessions == nil {
		e.sessions, e.users = map[string]int64{}, map[string]int64{}
	}
	m := e.sessions
	if kind == "u" {
		m = e.users
	}
	if at > m[id] {
		m[id] = at
	}
}

// load replaces the copy with Redis's set; on error the copy stays.
func (v *Verifier) loadEnded(ctx context.Context) error {
	e := &v.ended
	e.mu.Lock()
	rdb := e.rdb
	e.mu.Unlock()
	if rdb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	zs, err := rdb.ZRangeWithScores(ctx, rkey.RevokedSessionsKey, 0, -1).Result()
	if err != nil {
		if v.log != nil {
			v.log.WarnContext(ctx, "ended sessions not loaded", slog.String("err", err.Error()))
		}
		return err
	}
	sessions, users := map[string]int64{}, map[string]int64{}
	for _, z := range zs {
		member, _ := z.Member.(string)
		kind, id, _ := strings.Cut(member, ":")
		switch kind {
		case "s":
			sessions[id] = int64(z.Score)
		case "u":
			users[id] = int64(z.Score)
		}
	}
	e.mu.Lock()
	// Records pushed while the load ran are newer than what it read.
	for id, at := range e.sessions {
		if at > sessions[id] && time.Since(time.UnixMilli(at)) < 5*time.Second {
			sessions[id] = at
		}
	}
	for id, at := range e.users {
		if at > users[id] && time.Since(time.UnixMilli(at)) < 5*time.Second {
			users[id] = at
		}
	}
	e.sessions, e.users, e.loadedAt = sessions, users, time.Now()
	e.mu.Unlock()
	return nil
}

// sessionEnded reports whether a session token was ended: its login was
// logged out, or its user's sessions ended after it was issued. The copy is
// refreshed from Redis when older than the cache TTL (a frozen Lambda or a
// lost message), so no instance keeps accepting it past that.
func (v *Verifier) sessionEnded(ctx context.Context, c *Claims) bool {
	e := &v.ended
	e.mu.Lock()
	stale := e.rdb != nil && !e.loading && time.Since(e.loadedAt) > max(v.ttl, 100*time.Millisecond)
	if stale {
		e.loading = true
	}
	e.mu.Unlock()
	if stale {
		v.loadEnded(ctx) //nolint:errcheck // logged; the pushed copy stands meanwhile
		e.mu.Lock()
		e.loading = false
		e.mu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.SessionID != "" {
		if _, ok := e.sessions[c.SessionID]; ok {
			return true
		}
	}
	if at, ok := e.users[c.Subject]; ok && c.IssuedAt != nil && c.IssuedAt.Time.UnixMilli() <= at {
		return true
	}
	return false
}
