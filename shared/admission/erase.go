package admission

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// EraseUserCache deletes a deleted account's response-cache entries (its
// prompts' answers) and returns how many. They share the user's hash tag,
// so in a cluster they live on one node; every master is scanned anyway.
func EraseUserCache(ctx context.Context, rdb redis.UniversalClient, userID string) (int, error) {
	n := 0
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, rkey.CachePattern(userID), 500).Iterator()
		for it.Next(ctx) {
			if err := c.Unlink(ctx, it.Val()).Err(); err != nil {
				return err
			}
			n++
		}
		return it.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	case *redis.Client:
		err = scan(ctx, c)
	}
	return n, err
}
