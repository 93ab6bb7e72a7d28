package admission

import (
	"context"
	"errors"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// The response cache is exact-match and per user (one user's prompts never
// answer another's): the key is a hash of the model, the endpoint and the
// request body as sent upstream.

// Cached is a stored response.
type Cached struct {
	Result string // the response body
	Usage  string // its usage JSON, as the engine counted it
}

// CacheGet returns the cached response for this request, if any.
func (a *Admitter) CacheGet(ctx context.Context, userID, model, endpoint string, body []byte) (*Cached, error) {
	v, err := a.rdb.HMGet(ctx, rkey.CacheKey(userID, model, endpoint, body), "result", "usage").Result()
	if err != nil || v[0] == nil {
		return nil, err
	}
	res, _ := v[0].(string)
	u, _ := v[1].(string)
	return &Cached{Result: res, Usage: u}, nil
}

// CachePut stores a response for admission.cache_ttl.
func (a *Admitter) CachePut(ctx context.Context, userID, model, endpoint string, body []byte, c Cached) error {
	k := rkey.CacheKey(userID, model, endpoint, body)
	pipe := a.rdb.TxPipeline()
	pipe.HSet(ctx, k, "result", c.Result, "usage", c.Usage)
	pipe.PExpire(ctx, k, a.cfg.Admission.CacheTTL)
	_, err := pipe.Exec(ctx)
	return err
}

// CacheHit records a job answered from the cache (no GPU): its job hash, so
// it can be read back, and a settle event, so its hold is settled at the
// model's cached_response price.
func (a *Admitter) CacheHit(ctx context.Context, tk *Ticket, keyID, model, endpoint string, c *Cached) error {
	if tk == nil || !tk.Reserved {
		return errors.New("admission: a cache hit needs a reservation")
	}
	return redisq.CacheHitJob(ctx, a.rdb, redisq.CachedJob{JobID: tk.JobID, UserID: tk.UserID, KeyID: keyID,
		Model: model, Endpoint: endpoint, Result: c.Result, Usage: c.Usage, Hold: tk.Hold, TTL: a.cfg.Jobs.ResultTTL})
}
