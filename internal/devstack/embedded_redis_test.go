package devstack_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
)

// TestEmbeddedRedisSPublish: the embedded Redis runs SPUBLISH, inside a
// script too, as the queue scripts do (without it, make run's completions
// failed: "Unknown Redis command called from script").
func TestEmbeddedRedisSPublish(t *testing.T) {
	t.Parallel()
	url, stop, err := devstack.EmbeddedRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	opt, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx := context.Background()
	sub := rdb.Subscribe(ctx, "ch")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := redis.NewScript(`return redis.call('SPUBLISH', KEYS[1], ARGV[1])`).Run(ctx, rdb, []string{"ch"}, "hello").Int()
	if err != nil || n != 1 {
		t.Fatalf("SPUBLISH in a script: %d receivers, %v", n, err)
	}
	if m, err := sub.ReceiveMessage(ctx); err != nil || m.Payload != "hello" {
		t.Fatalf("message: %v %v", m, err)
	}
	if n, err := rdb.SPublish(ctx, "ch", "again").Result(); err != nil || n != 1 {
		t.Fatalf("SPUBLISH: %d, %v", n, err)
	}
}
