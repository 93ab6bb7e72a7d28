// Package scratch gives the benchmark and drill programs throwaway state on
// the real services: a fresh PostgreSQL database and a flushed Redis
// database index, both named by the caller and removed afterwards.
package scratch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rconn"
)

// FirstEnv returns the first set variable of names, or def.
func FirstEnv(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

// RandHex returns n random bytes as hex.
func RandHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

// CreateDatabase creates a fresh database next to adminURL's and returns its
// URL and a function that drops it.
func CreateDatabase(ctx context.Context, adminURL, prefix string) (string, func(), error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("database URL: %w", err)
	}
	name := prefix + RandHex(6)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL at %s: %w", u.Redacted(), err)
	}
	defer conn.Close(context.WithoutCancel(cctx))
	if _, err := conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		c, err := pgx.Connect(dctx, adminURL)
		if err != nil {
			fmt.Fprintln(os.Stderr, "drop database:", err)
			return
		}
		defer c.Close(dctx)
		if _, err := c.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "drop database:", err)
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// RedisDBURL returns base with its database index replaced by db. A Redis
// Cluster has only database 0: a URL in go-redis's cluster form
// (?addr=...) is returned as it is, and a cluster's seed address is
// refused by rconn.Open with the fix (drop /db) if db is not 0.
func RedisDBURL(base string, db int) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return "", fmt.Errorf("redis URL %q: want redis://host:port[/db]", base)
	}
	if u.Query().Has("addr") {
		return base, nil
	}
	u.Path = "/" + strconv.Itoa(db)
	return u.String(), nil
}

// FlushRedis connects to url as the platform does (rconn.Open: one server
// or a Redis Cluster) and empties it: its database, or every master of a
// cluster, so a load program's Redis must be its own.
func FlushRedis(ctx context.Context, url string) (redis.UniversalClient, error) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := rconn.Open(fctx, url, rconn.Options{})
	if err != nil {
		return nil, err
	}
	if err := Flush(fctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	return c, nil
}

// Flush empties c's database, or every master of a cluster (FLUSHDB on a
// cluster client reaches one node only).
func Flush(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.FlushDB(ctx).Err() })
	}
	return c.FlushDB(ctx).Err()
}

// Unthrottled is configuration for load programs, which measure the queue
// and the worker, not quotas: every tier without rate, token, concurrency or
// funds limits, and 'custom' (the admin key's enterprise tier) generous. With
// admissionOff, admission is switched off altogether instead.
func Unthrottled(admissionOff bool) string {
	tier := "{rate_limit: unlimited, included_credits: unlimited, tokens_per_minute: unlimited, concurrency: unlimited}"
	y := "tiers:\n  free: " + tier + "\n  pro: " + tier + "\n  enterprise: " + tier + "\n"
	if admissionOff {
		return y + "admission:\n  disabled: true\n"
	}
	return y + "admission:\n  custom: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, concurrency: 1000000}\n"
}
