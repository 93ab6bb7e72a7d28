package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// floor is the overhead bench's lower bound for Sluice's shape (issue 19):
// a skeleton doing only the steps that shape and its invariants require,
// each in its cheapest form, with the same clients (go-redis, pgx,
// net/http) against the same Redis, PostgreSQL and simulator:
//
//   - submit: one HTTP hop in; one script for limits and the funds hold
//     (one key); one script that stores the job and queues it (XADD); a
//     blocking read of the job's result stream (the queue hop: the worker
//     is another process in production, so the answer comes back through
//     Redis); then the lease release and the stream's deletion in one
//     pipeline, and the answer;
//   - worker: a blocking XREADGROUP of the queue (the claim), one read of
//     the job (the start), the engine call over a kept-alive connection,
//     one script writing the result, the usage event and the ack (the
//     completion);
//   - metering: one consumer of the usage events, each batch one
//     PostgreSQL INSERT ... ON CONFLICT DO NOTHING (exactly once) and an
//     XACK + XDEL.
//
// No keys are checked, no limits computed, no prices, no metrics, no logs,
// no settlement ledger, no crash recovery (no leases on jobs, no
// reclaim): what Sluice adds beyond this row is the work this skeleton
// leaves out; what this row adds to direct is what no implementation of the
// shape can avoid on the machine.
type floor struct {
	url  string
	stop func()
}

// Scripts of the skeleton: each touches only its KEYS (one slot, {fl}).
var (
	floorAdmit = redis.NewScript(`
local held = redis.call('HINCRBY', KEYS[1], 'held', ARGV[1])
return held`)
	floorEnqueue = redis.NewScript(`
redis.call('HSET', KEYS[1], 'body', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
return 1`)
	floorComplete = redis.NewScript(`
redis.call('XADD', KEYS[1], '*', 'r', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'u', ARGV[3])
redis.call('HSET', KEYS[3], 'status', 'done')
redis.call('XACK', KEYS[4], 'w', ARGV[4])
redis.call('XDEL', KEYS[4], ARGV[4])
return 1`)
)

// Key names of the skeleton: one hash tag, so a cluster runs every script.
func floorKey(parts ...string) string {
	k := "bench-floor:{fl}"
	for _, p := range parts {
		k += ":" + p
	}
	return k
}

// startFloor runs the skeleton: its HTTP server on a free loopback port,
// workers goroutines claiming jobs, one metering consumer. redisURL and
// dbURL are the run's scratch Redis and database; its Redis client has a
// connection for every blocking read (a worker's claim, a request's wait)
// as Sluice's multiplexed waits need none.
func startFloor(ctx context.Context, redisURL, dbURL, engineURL string, workers int) (*floor, error) {
	ropt, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	ropt.PoolSize = 4*workers + 256
	rdb := redis.NewClient(ropt)
	ctx, cancel := context.WithCancel(ctx)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		cancel()
		rdb.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_floor_usage (job_id TEXT PRIMARY KEY, tokens INT NOT NULL)`); err != nil {
		cancel()
		pool.Close()
		rdb.Close()
		return nil, err
	}
	queue, usage := floorKey("q"), floorKey("usage")
	for _, s := range []string{queue, usage} {
		if err := rdb.XGroupCreateMkStream(ctx, s, "w", "$").Err(); err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			cancel()
			pool.Close()
			rdb.Close()
			return nil, err
		}
	}
	engine := &http.Client{Transport: &http.Transport{MaxIdleConns: 4 * workers, MaxIdleConnsPerHost: 4 * workers,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	var wg sync.WaitGroup
	var seq atomic.Int64

	// The worker: claim, start, engine, complete.
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			consumer := "w" + strconv.Itoa(i)
			for ctx.Err() == nil {
				res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "w", Consumer: consumer,
					Streams: []string{queue, ">"}, Count: 1, Block: time.Second}).Result()
				if err != nil {
					continue // redis.Nil: nothing queued within the block
				}
				for _, m := range res[0].Messages {
					id, _ := m.Values["id"].(string)
					job := floorKey("job", id)
					body, err := rdb.HGet(ctx, job, "body").Bytes()
					if err != nil {
						continue
					}
					out, err := floorEngine(ctx, engine, engineURL, body)
					if err != nil {
						out, _ = json.Marshal(map[string]any{"error": map[string]string{"message": err.Error()}})
					}
					floorComplete.Run(ctx, rdb, []string{floorKey("res", id), usage, job, queue}, //nolint:errcheck // a lost completion shows as a client timeout
						id, out, "16", m.ID)
				}
			}
		}()
	}

	// Metering: usage events into PostgreSQL in batches, exactly once.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "w", Consumer: "m",
				Streams: []string{usage, ">"}, Count: 256, Block: time.Second}).Result()
			if err != nil {
				continue
			}
			ms := res[0].Messages
			ids, jobs, tokens := make([]string, len(ms)), make([]string, len(ms)), make([]int32, len(ms))
			for i, m := range ms {
				ids[i] = m.ID
				jobs[i], _ = m.Values["id"].(string)
				n, _ := strconv.Atoi(fmt.Sprint(m.Values["u"]))
				tokens[i] = int32(n)
			}
			if _, err := pool.Exec(ctx, `INSERT INTO bench_floor_usage (job_id, tokens)
				SELECT * FROM unnest($1::text[], $2::int[]) ON CONFLICT DO NOTHING`, jobs, tokens); err != nil {
				continue // left pending, as a consumer would retry
			}
			pipe := rdb.Pipeline()
			pipe.XAck(ctx, usage, "w", ids...)
			pipe.XDel(ctx, usage, ids...)
			pipe.Exec(ctx) //nolint:errcheck
		}
	}()

	// Submit.
	mux := http.NewServeMux()
	funds := floorKey("funds")
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rctx := r.Context()
		if err := floorAdmit.Run(rctx, rdb, []string{funds}, 100).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		id := strconv.FormatInt(seq.Add(1), 36)
		job, resKey := floorKey("job", id), floorKey("res", id)
		if err := floorEnqueue.Run(rctx, rdb, []string{job, queue}, id, body).Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		res, err := rdb.XRead(rctx, &redis.XReadArgs{Streams: []string{resKey, "0"}, Count: 1, Block: 30 * time.Second}).Result()
		if err != nil || len(res) == 0 || len(res[0].Messages) == 0 {
			http.Error(w, fmt.Sprint("no result: ", err), http.StatusGatewayTimeout)
			return
		}
		out, _ := res[0].Messages[0].Values["r"].(string)
		pipe := rdb.Pipeline()
		pipe.HIncrBy(rctx, funds, "held", -100)
		pipe.Del(rctx, resKey, job)
		if _, err := pipe.Exec(rctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, out) //nolint:errcheck
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		pool.Close()
		rdb.Close()
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return &floor{url: "http://" + ln.Addr().String(), stop: func() {
		srv.Close()
		cancel()
		wg.Wait()
		pool.Close()
		c := context.Background()
		rdb.Del(c, queue, usage, funds)
		rdb.Close()
	}}, nil
}

// floorEngine posts one job's body to the engine and returns its answer.
func floorEngine(ctx context.Context, c *http.Client, url string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("engine status " + strconv.Itoa(resp.StatusCode))
	}
	return out, nil
}
