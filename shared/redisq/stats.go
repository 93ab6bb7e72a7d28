package redisq

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

var (
	//go:embed lua/publish_endpoints.lua
	publishEndpointsLua string
	//go:embed lua/read_endpoints.lua
	readEndpointsLua string

	publishEndpointsScript = redis.NewScript(publishEndpointsLua)
	readEndpointsScript    = redis.NewScript(readEndpointsLua)
)

// PriorityStats is one priority class of a model, as an operator sees it.
type PriorityStats struct {
	Priority int `json:"priority"`
	// Depth is the jobs of the class not yet finished: waiting in the fair
	// queue, handed back, or running.
	Depth int64 `json:"depth"`
	// Pending is the jobs claimed by a worker and not yet completed.
	Pending int64 `json:"pending"`
	// OldestAge is how long the oldest unfinished job has waited (the lag),
	// by Redis's clock; zero when empty.
	OldestAge time.Duration `json:"-"`
	// OldestAgeMS is OldestAge in milliseconds, for JSON.
	OldestAgeMS int64 `json:"oldest_age_ms"`
}

// QueueStats returns depth, pending and lag of each priority class of a
// model: the Backlog counts plus the age of the oldest job, found among the
// heads of the fair queues and the oldest stream entries of its shards.
func (q *Queue) QueueStats(ctx context.Context, model string, priorities int) ([]PriorityStats, error) {
	bl, err := q.Backlog(ctx, model, priorities)
	if err != nil {
		return nil, err
	}
	pipe := q.rdb.Pipeline()
	tm := pipe.Time(ctx)
	tags := q.ShardTags(model)
	n := len(tags)
	heads := make([]*redis.StringSliceCmd, priorities*n)
	firsts := make([]*redis.XMessageSliceCmd, priorities*n)
	for p := range priorities {
		for s, t := range tags {
			heads[p*n+s] = pipe.ZRange(ctx, rkey.ShardFairKey(t, model, p), 0, 0)
			firsts[p*n+s] = pipe.XRangeN(ctx, rkey.ShardStreamKey(t, model, p), "-", "+", 1)
		}
	}
	// A stream that does not exist yet answers with an error for its own
	// command only; that means empty.
	if _, err := pipe.Exec(ctx); err != nil && tm.Err() != nil {
		return nil, translate(tm.Err())
	}
	created := q.rdb.Pipeline()
	headCreated := make([]*redis.StringCmd, len(heads))
	for i := range heads {
		if ids := heads[i].Val(); len(ids) > 0 && rkey.JobTag(ids[0]) != "" {
			headCreated[i] = created.HGet(ctx, rkey.JobKey(ids[0]), "created")
		}
	}
	created.Exec(ctx) //nolint:errcheck // a job gone meanwhile just has no age
	now := tm.Val()
	out := make([]PriorityStats, priorities)
	for p, b := range bl {
		s := PriorityStats{Priority: p, Depth: b.Queued + b.Lag + b.Pending, Pending: b.Pending}
		for i := p * n; i < (p+1)*n; i++ {
			if ms := firsts[i].Val(); len(ms) > 0 {
				if t, ok := entryTime(ms[0].ID); ok && now.After(t) {
					s.OldestAge = max(s.OldestAge, now.Sub(t))
				}
			}
			if c := headCreated[i]; c != nil {
				if v, err := strconv.ParseInt(c.Val(), 10, 64); err == nil && now.After(time.UnixMilli(v)) {
					s.OldestAge = max(s.OldestAge, now.Sub(time.UnixMilli(v)))
				}
			}
		}
		s.OldestAgeMS = s.OldestAge.Milliseconds()
		out[p] = s
	}
	return out, nil
}

// entryTime is the time a stream entry id was made (its millisecond part).
func entryTime(id string) (time.Time, bool) {
	msPart, _, _ := strings.Cut(id, "-")
	v, err := strconv.ParseInt(msPart, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(v), true
}

// EndpointStatus is one engine endpoint as its worker sees it.
type EndpointStatus struct {
	URL      string `json:"url"`
	Healthy  bool   `json:"healthy"`
	InFlight int64  `json:"in_flight"`
	Capacity int64  `json:"capacity"`
}

// WorkerEndpoints is what one live worker last published for a model.
type WorkerEndpoints struct {
	Worker    string           `json:"worker"`
	ExpiresIn time.Duration    `json:"-"`
	Endpoints []EndpointStatus `json:"endpoints"`
}

// PublishEndpoints records this worker's endpoints of a model for ttl; a
// worker that stops publishing drops out of Endpoints after ttl.
func (q *Queue) PublishEndpoints(ctx context.Context, model, worker string, eps []EndpointStatus, ttl time.Duration) error {
	b, err := json.Marshal(eps)
	if err != nil {
		return err
	}
	return translate(publishEndpointsScript.Run(ctx, q.rdb, []string{rkey.EndpointsKey(model), rkey.EndpointsSeenKey(model)},
		worker, string(b), ms(ttl)).Err())
}

// Endpoints returns the live workers' published endpoints of a model.
func (q *Queue) Endpoints(ctx context.Context, model string) ([]WorkerEndpoints, error) {
	res, err := readEndpointsScript.Run(ctx, q.rdb, []string{rkey.EndpointsKey(model), rkey.EndpointsSeenKey(model)}).Slice()
	if err != nil {
		return nil, translate(err)
	}
	if len(res) == 0 {
		return nil, errors.New("redisq: empty endpoints reply")
	}
	now, _ := res[0].(int64)
	var out []WorkerEndpoints
	for i := 1; i+2 < len(res); i += 3 {
		w, _ := res[i].(string)
		exp, _ := res[i+1].(string)
		raw, _ := res[i+2].(string)
		we := WorkerEndpoints{Worker: w}
		if v, err := strconv.ParseFloat(exp, 64); err == nil {
			we.ExpiresIn = time.Duration(int64(v)-now) * time.Millisecond
		}
		if json.Unmarshal([]byte(raw), &we.Endpoints) != nil {
			continue
		}
		out = append(out, we)
	}
	return out, nil
}
