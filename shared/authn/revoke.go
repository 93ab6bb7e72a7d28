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

// Revocation messages on rkey.AuthEvictChannel: "key:<id>" drops one key,
// "user:<id>" every credential of a user (disabled, deleted, role changed),
// "jwks:" a signing key rotation, "ended:<s|u>:<id>@<unix ms>" an ended
// login or user's sessions (see EndSession).

// RevokeKey tells every instance to forget a key at once.
func RevokeKey(ctx context.Context, rdb redis.UniversalClient, keyID string) error {
	return rdb.Publish(ctx, rkey.AuthEvictChannel, "key:"+keyID).Err()
}

// RevokeKey is the package's RevokeKey, this verifier forgetting the key
// before it returns (read-your-writes for the instance that revoked it;
// see EndSession).
func (v *Verifier) RevokeKey(ctx context.Context, rdb redis.UniversalClient, keyID string) error {
	v.evictKeyID(keyID)
	return RevokeKey(ctx, rdb, keyID)
}

// RevokeUser is the package's RevokeUser, this verifier forgetting the
// user's credentials before it returns.
func (v *Verifier) RevokeUser(ctx context.Context, rdb redis.UniversalClient, userID string) error {
	v.evictUser(userID)
	return RevokeUser(ctx, rdb, userID)
}

// RevokeUser tells every instance to forget a user's credentials at once.
func RevokeUser(ctx context.Context, rdb redis.UniversalClient, userID string) error {
	return rdb.Publish(ctx, rkey.AuthEvictChannel, "user:"+userID).Err()
}

// SigningKeysChanged tells every instance to reload the JWT verification
// keys on the next unknown kid instead of waiting out the refetch bound.
func SigningKeysChanged(ctx context.Context, rdb redis.UniversalClient) error {
	return rdb.Publish(ctx, rkey.AuthEvictChannel, "jwks:").Err()
}

// Listen applies revocation messages to this instance's cache until ctx
// ends, resubscribing after a dropped connection; messages lost while
// disconnected are covered by clearing the cache on every (re)subscription
// and by the TTL.
func (v *Verifier) Listen(ctx context.Context, rdb redis.UniversalClient) {
	v.listen(ctx, rdb, func() {})
}

// Subscribed starts Listen in the background and returns once the first
// subscription is up (or failed), so a caller knows revocations reach it.
func (v *Verifier) Subscribed(ctx context.Context, rdb redis.UniversalClient) {
	ready := make(chan struct{})
	var once sync.Once
	go v.listen(ctx, rdb, func() { once.Do(func() { close(ready) }) })
	<-ready
}

func (v *Verifier) listen(ctx context.Context, rdb redis.UniversalClient, up func()) {
	defer up()
	v.ended.mu.Lock()
	v.ended.rdb = rdb
	v.ended.mu.Unlock()
	for ctx.Err() == nil {
		sub := rdb.Subscribe(ctx, rkey.AuthEvictChannel)
		_, err := sub.Receive(ctx)
		if err != nil {
			up()
			sub.Close()
			if v.log != nil && ctx.Err() == nil {
				v.log.WarnContext(ctx, "revocation channel unavailable", slog.String("err", err.Error()))
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		v.clear()        // anything may have been revoked while we were not listening
		v.loadEnded(ctx) //nolint:errcheck // logged; reloaded again within the cache TTL
		up()             // ended sessions are known before the first request is served
		stop := context.AfterFunc(ctx, func() { sub.Close() })
		for msg := range sub.Channel() {
			v.apply(msg.Payload)
		}
		stop()
		sub.Close()
	}
}

func (v *Verifier) apply(payload string) {
	kind, id, _ := strings.Cut(payload, ":")
	switch kind {
	case "key":
		v.evictKeyID(id)
	case "user":
		v.evictUser(id)
	case "ended":
		member, at, _ := strings.Cut(id, "@")
		ms, err := strconv.ParseInt(at, 10, 64)
		if err == nil {
			v.ended.add(member, ms)
		}
	case "jwks":
		if v.tokens != nil {
			v.tokens.forget()
		}
	}
}

func (v *Verifier) clear() {
	v.mu.Lock()
	clear(v.cache)
	clear(v.users)
	v.mu.Unlock()
}
