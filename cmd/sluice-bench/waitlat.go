package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// waitLatency measures, -n times per way, the time from an append to a
// result stream (the chunks script) to a waiter seeing it: the blocking
// XREAD each waiter used to issue on a connection of its own, a direct
// Watch (the first waits of a process), and a shared Watch (notice, then
// read). The three take turns, so machine noise hits each alike.
func waitLatency(ctx context.Context, o options, stderr io.Writer) (string, error) {
	url := scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL")
	rdb, err := rconn.Open(ctx, url, rconn.Options{})
	if err != nil {
		return "", err
	}
	defer rdb.Close()
	m := "waitlat-" + scratch.RandHex(4)
	writer := redisq.New(rdb, redisq.Options{})
	direct := redisq.New(rdb, redisq.Options{})
	shared := redisq.New(rdb, redisq.Options{WaitDirect: -1})
	ways := []struct {
		name string
		wait func(ctx context.Context, id string, ready chan<- struct{}) error
	}{
		{"before: XREAD BLOCK per waiter", func(ctx context.Context, id string, ready chan<- struct{}) error {
			close(ready)
			return rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{rkey.ResultKey(id), "0"}, Block: 10 * time.Second, Count: 256}).Err()
		}},
		{"after: direct wait", func(ctx context.Context, id string, ready chan<- struct{}) error {
			w := direct.Watch(id)
			defer w.Close()
			close(ready)
			_, err := w.Next(ctx, "0")
			return err
		}},
		{"after: shared wait (notice + read)", func(ctx context.Context, id string, ready chan<- struct{}) error {
			w := shared.Watch(id)
			defer w.Close()
			close(ready)
			_, err := w.Next(ctx, "0")
			return err
		}},
	}
	lat := make([][]time.Duration, len(ways))
	for i := range o.requests {
		for k, way := range ways {
			id := rkey.NewJobID(m)
			if err := rdb.HSet(ctx, rkey.JobKey(id), "status", "running").Err(); err != nil {
				return "", err
			}
			ready, seen := make(chan struct{}), make(chan error, 1)
			var at time.Time
			go func() {
				err := way.wait(ctx, id, ready)
				at = time.Now()
				seen <- err
			}()
			<-ready
			time.Sleep(5 * time.Millisecond) // let the read block (and a first subscription confirm)
			t0 := time.Now()
			if err := writer.Chunks(ctx, id, []string{"x"}, true); err != nil {
				return "", err
			}
			if err := <-seen; err != nil {
				return "", fmt.Errorf("%s, round %d: %w", way.name, i, err)
			}
			lat[k] = append(lat[k], at.Sub(t0))
			rdb.Del(ctx, rkey.JobKey(id), rkey.ResultKey(id))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Time from an append to its waiter seeing it (%d each, Redis %s)\n\n", o.requests, url)
	fmt.Fprintf(&b, "| way | p50 µs | p90 µs | p99 µs |\n|---|---|---|---|\n")
	for k, way := range ways {
		slices.Sort(lat[k])
		p := pct(lat[k])
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f |\n", way.name, us(p.p50), us(p.p90), us(p.p99))
	}
	return b.String(), nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
