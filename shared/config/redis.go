package config

import (
	"errors"
	"time"
)

// Redis tunes how Sluice writes to Redis (the address is REDIS_URL).
type Redis struct {
	// WaitReplicas is how many replicas must acknowledge the writes whose
	// loss at a failover would lose a job or money (enqueue before the
	// 200/202, completion, settlement) before they are answered: Redis's
	// WAIT, on a connection pinned to the key's master. Default 0: off
	// (replication is asynchronous and such a write can vanish when its
	// master dies). See docs/SCALING.md, "Failover".
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds each WAIT; default 100ms. A WAIT that times out
	// does not fail the write (it exists on the master; an error would make
	// the client retry and pay twice): it is counted in
	// sluice_redis_wait_timeouts_total.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

func (c *Config) applyRedisDefaults() {
	def(&c.Redis.WaitTimeout, 100*time.Millisecond)
}

func (c *Config) validateRedis() error {
	var errs []error
	r := c.Redis
	if r.WaitReplicas < 0 || r.WaitReplicas > 16 {
		errs = append(errs, errors.New("redis.wait_replicas: must be 0..16"))
	}
	// WAIT's timeout is whole milliseconds, and 0 would block for ever.
	if r.WaitTimeout < time.Millisecond || r.WaitTimeout > 10*time.Second {
		errs = append(errs, errors.New("redis.wait_timeout: must be 1ms..10s"))
	}
	return errors.Join(errs...)
}
