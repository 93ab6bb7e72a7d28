package admission

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// Held returns the token bounds a job's funds hold was taken for: the
// prompt bound and the completion bound (max tokens × choices). ok is false
// when the job has no hold (it was never reserved, or has settled or
// lapsed). The worker bills a cut job's prompt from it when neither the
// engine nor its tokenizer can say what the prompt was: the bound is what
// the user agreed to pay at most, never less than the prompt.
func Held(ctx context.Context, rdb redis.UniversalClient, userID, jobID string) (prompt, completion int64, ok bool, err error) {
	h, err := rdb.HGet(ctx, rkey.User(userID).Holds, jobID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	// P|M|pin|pout|... as admit.lua writes it.
	f := strings.SplitN(h, "|", 3)
	if len(f) < 2 {
		return 0, 0, false, errors.New("admission: malformed hold " + strconv.Quote(h))
	}
	p, perr := strconv.ParseInt(f[0], 10, 64)
	m, merr := strconv.ParseInt(f[1], 10, 64)
	if perr != nil || merr != nil {
		return 0, 0, false, errors.New("admission: malformed hold " + strconv.Quote(h))
	}
	return p, m, true, nil
}
