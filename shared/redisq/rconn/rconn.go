// Package rconn opens Sluice's Redis client from a REDIS_URL: one server or
// a Redis Cluster. A cluster is named either in go-redis's cluster URL form
// (redis://HOST:PORT?addr=HOST2:PORT2&addr=HOST3:PORT3, rediss:// for TLS)
// or, the usual way, by one seed address; so a single address is probed at
// start (INFO cluster) and gets a cluster client when it is one.
//
// It lives apart from shared/app so that the tests' Redis helper
// (redistest), which the queue package's own tests use, opens the same
// client without an import cycle.
package rconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune the client; zero values keep go-redis's defaults.
type Options struct {
	// PoolSize is the least number of pooled connections per server.
	PoolSize int
	// ReadTimeout bounds a reply's wait (blocking commands add their block).
	ReadTimeout time.Duration
}

// Open connects to url and checks that it serves: every master of a cluster
// must answer and the cluster's state must be ok, so a cluster that cannot
// serve every slot fails at start with the reason rather than at the first
// request.
func Open(ctx context.Context, rawURL string, o Options) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse REDIS_URL: %w", errors.Unwrap(err))
	}
	if u.Query().Has("addr") {
		copt, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: parse REDIS_URL: %w", err)
		}
		return openCluster(ctx, copt, o)
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse REDIS_URL: %w", err)
	}
	applyNode(opt, o)
	rdb := redis.NewClient(opt)
	info, err := rdb.Info(ctx, "cluster").Result()
	var reply redis.Error
	if errors.As(err, &reply) {
		// The server answered but has no cluster section: not a cluster
		// (the local stack's embedded Redis, miniredis, answers "section
		// (cluster) is not supported").
		return rdb, nil
	}
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis: %s: %w", opt.Addr, err)
	}
	if !strings.Contains(info, "cluster_enabled:1") {
		return rdb, nil
	}
	rdb.Close()
	if opt.DB != 0 {
		return nil, fmt.Errorf("redis: %s is a Redis Cluster, which has only database 0; drop /%d from REDIS_URL", opt.Addr, opt.DB)
	}
	return openCluster(ctx, &redis.ClusterOptions{
		Addrs:       []string{opt.Addr},
		Username:    opt.Username,
		Password:    opt.Password,
		TLSConfig:   opt.TLSConfig,
		ClientName:  opt.ClientName,
		DialTimeout: opt.DialTimeout,
		MaxRetries:  opt.MaxRetries,
	}, o)
}

func applyNode(opt *redis.Options, o Options) {
	if opt.PoolSize < o.PoolSize {
		opt.PoolSize = o.PoolSize
	}
	if o.ReadTimeout > 0 {
		opt.ReadTimeout = o.ReadTimeout
	}
}

func openCluster(ctx context.Context, copt *redis.ClusterOptions, o Options) (redis.UniversalClient, error) {
	if copt.PoolSize < o.PoolSize {
		copt.PoolSize = o.PoolSize
	}
	if o.ReadTimeout > 0 {
		copt.ReadTimeout = o.ReadTimeout
	}
	c := redis.NewClusterClient(copt)
	c.AddHook(reloadOnFailure{c})
	if err := CheckCluster(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// CheckCluster says whether a cluster can serve: its state is ok and every
// master answers.
func CheckCluster(ctx context.Context, c *redis.ClusterClient) error {
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return fmt.Errorf("redis cluster: %w", err)
	}
	if !strings.Contains(info, "cluster_state:ok") {
		return errors.New("redis cluster: cluster_state is not ok (a master is down or slots are unassigned)")
	}
	err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := m.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis cluster: master %s: %w", m.Options().Addr, err)
		}
		return nil
	})
	return err
}

// IsCluster reports whether rdb is a cluster client.
func IsCluster(rdb redis.UniversalClient) bool {
	_, ok := rdb.(*redis.ClusterClient)
	return ok
}

// reloadOnFailure refreshes the cluster's slot map when a command fails the
// way a failover makes it fail. go-redis reloads the map on MOVED and ASK
// only (and every ClusterStateReloadInterval, a minute): a master killed
// outright never answers MOVED, so without this every command of its slots
// kept dialing the dead address for up to a minute after its replica had
// been promoted (found by `sluice-drill failover`). Reloads are coalesced
// by go-redis (one at a time, then a 200 ms pause), so a burst of failures
// costs a few CLUSTER SLOTS, not one each.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if FailoverError(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if FailoverError(c.Err()) {
				h.c.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// FailoverError reports whether err is what a cluster answers while a master
// is dead or being replaced: a network failure (refused, reset, timed out,
// closed), or CLUSTERDOWN, TRYAGAIN, MASTERDOWN, READONLY or LOADING. The
// slot map may then be stale.
func FailoverError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "LOADING"} {
		if strings.HasPrefix(err.Error(), p) {
			return true
		}
	}
	return false
}
