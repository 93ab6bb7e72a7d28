package auth

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

//go:embed lua/hit.lua
var hitLua string

var hitScript = redis.NewScript(hitLua)

// limiter counts abuse (failed logins, sign-ups, key creation) in Redis so
// the limits hold across instances.
type limiter struct {
	rdb    redis.UniversalClient
	window time.Duration
}

// hit counts one event and returns the count in the current window.
func (l *limiter) hit(ctx context.Context, kind, subject string) (int, error) {
	n, err := hitScript.Run(ctx, l.rdb, []string{rkey.LimitKey(kind, subject)}, l.window.Milliseconds()).Int()
	if err != nil {
		return 0, sluice.Unavailable("The rate limiter is unavailable.", err)
	}
	return n, nil
}

// count returns the events counted in the current window.
func (l *limiter) count(ctx context.Context, kind, subject string) (int, error) {
	s, err := l.rdb.Get(ctx, rkey.LimitKey(kind, subject)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, sluice.Unavailable("The rate limiter is unavailable.", err)
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}

// reset forgets a counter (a successful login clears its failures).
func (l *limiter) reset(ctx context.Context, kind, subject string) {
	l.rdb.Del(ctx, rkey.LimitKey(kind, subject)) //nolint:errcheck // the window ends anyway
}

// allow hits a counter and refuses past limit.
func (l *limiter) allow(ctx context.Context, kind, subject string, limit int) error {
	n, err := l.hit(ctx, kind, subject)
	if err != nil {
		return err
	}
	if n > limit {
		return tooMany()
	}
	return nil
}

func tooMany() error {
	return &sluice.Error{Kind: sluice.KindRateLimited, Code: sluice.CodeRateLimitExceeded,
		Message: "Too many attempts. Try again later."}
}
