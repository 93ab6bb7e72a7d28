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
)

var (
	//go:embed lua/publish_endpoints.lua
	publishEndpointsLua string
	//go:embed lua/read_endpoints.lua
	readEndpointsLua string

	publishEndpointsScript = redis.NewScript(publishEndpointsLua)
	readEndpointsScript    = redis.NewScript(readEndpointsLua)
)

// PriorityStats is one priority stream of a model, as an operator sees it.
type PriorityStats struct {
	Priority int `json:"priority"`
	// Depth is the entries in the stream: waiting plus running (entries are
	// deleted when their job completes).
	Depth int64 `json:"depth"`
	// Pending is the entries claimed by a worker and not yet completed.
	Pending int64 `json:"pending"`
	// OldestAge is how long the oldest entry has been in the stream (the
	// lag), by Redis's clock; zero when empty.
	OldestAge time.Duration `json:"-"`
	// OldestAgeMS is OldestAge in milliseconds, for JSON.
	OldestAgeMS int64 `json:"oldest_age_ms"`
}

// QueueStats returns depth, pending and lag of each priority stream of a
// model, in one round trip.
func (q *Queue) QueueStats(ctx context.Context, model string, priorities int) ([]PriorityStats, error) {
	pipe := q.rdb.Pipeline()
	tm := pipe.Time(ctx)
	lens := make([]*redis.IntCmd, priorities)
	firsts := make([]*redis.XMessageSliceCmd, priorities)
	pend := make([]*redis.XPendingCmd, priorities)
	for p := range priorities {
		k := StreamKey(model, p)
		lens[p] = pipe.XLen(ctx, k)
		firsts[p] = pipe.XRangeN(ctx, k, "-", "+", 1)
		pend[p] = pipe.XPending(ctx, k, GroupWorkers)
	}
	// A stream or group that does not exist yet answers with an error for
	// its own command only; that means empty.
	if _, err := pipe.Exec(ctx); err != nil && tm.Err() != nil {
		return nil, translate(tm.Err())
	}
	now := tm.Val()
	out := make([]PriorityStats, priorities)
	for p := range priorities {
		s := PriorityStats{Priority: p, Depth: lens[p].Val()}
		if pv, err := pend[p].Result(); err == nil {
			s.Pending = pv.Count
		}
		if ms := firsts[p].Val(); len(ms) > 0 {
			if t, ok := entryTime(ms[0].ID); ok && now.After(t) {
				s.OldestAge = now.Sub(t)
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
	return translate(publishEndpointsScript.Run(ctx, q.rdb, []string{EndpointsKey(model), EndpointsSeenKey(model)},
		worker, string(b), ms(ttl)).Err())
}

// Endpoints returns the live workers' published endpoints of a model.
func (q *Queue) Endpoints(ctx context.Context, model string) ([]WorkerEndpoints, error) {
	res, err := readEndpointsScript.Run(ctx, q.rdb, []string{EndpointsKey(model), EndpointsSeenKey(model)}).Slice()
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
