package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
)

// streams sends -n slow streaming requests at once, half through each of
// two Sluice instances (one of them runs the worker), and samples Redis's
// connected_clients every 100 ms: how many connections waiting requests
// cost. Use a Redis of your own (TEST_REDIS_URL): every client of the
// server counts.
func streams(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	run, err := newScratchRun(ctx, o, "sluice-bench-streams-", progress)
	if err != nil {
		return "", err
	}
	defer run.close()
	dir, dbURL, redisURL, rdb := run.dir, run.dbURL, run.redisURL, run.rdb

	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return "", err
	}
	const maxModelLen = 2048
	seqs := max(o.maxNumSeqs, o.requests)
	sim, err := devstack.StartSim(ctx, bin, model, maxModelLen, seqs, filepath.Join(dir, "sim.log"),
		"--time-to-first-token", "0", "--inter-token-latency", o.itl.String())
	if err != nil {
		return "", fmt.Errorf("simulator: %w", err)
	}
	defer sim.Stop()
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: %d\n      endpoints: [%s]\npricing: null\n",
		model, seqs, maxModelLen, sim.URL) + scratch.Unthrottled(false)
	pepper := scratch.RandHex(32) // one key works on both instances
	var stacks []*devstack.Stack
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	for i, name := range []string{"a", "b"} {
		st, stop, err := startStack(ctx, filepath.Join(dir, name), yml, dbURL, redisURL, progress, func(do *devstack.Options) {
			do.Config.Env.KeyPepper = pepper
			do.NoWorker = i == 1
		})
		if err != nil {
			return "", fmt.Errorf("stack %s: %w", name, err)
		}
		stops = append(stops, stop)
		stacks = append(stacks, st)
	}
	progress("simulator %s (%s per token), instances http://%s (with the worker) and http://%s", sim.URL, o.itl, stacks[0].Addr, stacks[1].Addr)

	// connected_clients every 100 ms, from a connection of our own (counted).
	var peak, samples atomic.Int64
	var series []int64
	var seriesMu sync.Mutex
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if n := connectedClients(sctx, rdb); n > 0 {
				samples.Add(1)
				if n > peak.Load() {
					peak.Store(n)
				}
				seriesMu.Lock()
				series = append(series, n)
				seriesMu.Unlock()
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	before := connectedClients(ctx, rdb)

	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: o.requests,
		DisableCompression:  true,
	}}
	body := requestBody(o.maxTokens, true)
	start := time.Now()
	var wg sync.WaitGroup
	res := make([]phaseResult, 2)
	for i, st := range stacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := o.requests / 2
			if i == 0 {
				n = o.requests - o.requests/2
			}
			t := target{name: st.Addr, url: "http://" + st.Addr + "/v1/chat/completions", auth: "Bearer " + stacks[len(stacks)-1].AdminKey} // the last start revoked the earlier admin keys
			res[i] = load(ctx, client, t, body, n, n, true)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopSampling()
	<-sampled
	if ctx.Err() != nil {
		return "", ctx.Err()
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## %d concurrent slow streams through two instances and one worker\n\n", o.requests)
	fmt.Fprintf(&b, "simulator: %s per token, max_tokens %d; Redis %s\n\n", o.itl, o.maxTokens, redisURL)
	failed := 0
	for i, r := range res {
		failed += r.errors
		fmt.Fprintf(&b, "- instance %d: errors %d, stream p50 %.1f s, p99 %.1f s, first chunk p50 %.0f ms\n",
			i+1, r.errors, r.lat.p50.Seconds(), r.lat.p99.Seconds(), ms(r.ttfb.p50))
		if r.firstErr != "" {
			fmt.Fprintf(&b, "  first error: %s\n", r.firstErr)
		}
	}
	fmt.Fprintf(&b, "- completed %d of %d in %.1f s\n", o.requests-failed, o.requests, elapsed.Seconds())
	fmt.Fprintf(&b, "- Redis connected_clients: %d before the load, peak %d over %d samples (every 100 ms)\n",
		before, peak.Load(), samples.Load())
	seriesMu.Lock()
	fmt.Fprintf(&b, "- connected_clients each second: %s\n", everyTenth(series))
	seriesMu.Unlock()
	if failed > 0 {
		return b.String(), fmt.Errorf("%d streams failed", failed)
	}
	return b.String(), nil
}

func connectedClients(ctx context.Context, rdb redis.UniversalClient) int64 {
	info, err := rdb.Info(ctx, "clients").Result()
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_clients:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func everyTenth(s []int64) string {
	var parts []string
	for i := 0; i < len(s); i += 10 {
		parts = append(parts, strconv.FormatInt(s[i], 10))
	}
	return strings.Join(parts, " ")
}
