package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// soak runs synchronous chat completions at full load (-c clients, no pause)
// for -duration and prints, every -sample, what it holds: Redis used_memory
// and keys, the RSS of this process (the whole stack: submit, worker,
// settler) and of the simulator, and the requests served. Memory that grows
// with traffic shows as a slope; a flat line is the goal (issue 16). It also
// reports what one delivered request leaves behind (MEMORY USAGE of the last
// delivered job's hash and result stream).
//
// Redis's used_memory is the whole server's, so point TEST_REDIS_URL at a
// Redis of the soak's own for a clean figure.
func soak(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	run, err := newScratchRun(ctx, o, "sluice-bench-", progress)
	if err != nil {
		return "", err
	}
	defer run.close()
	dir, dbURL, redisURL, rdb := run.dir, run.dbURL, run.redisURL, run.rdb
	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return "", err
	}
	sim, err := devstack.StartSim(ctx, bin, model, 2048, o.maxNumSeqs, filepath.Join(dir, "sim.log"),
		"--time-to-first-token", "0", "--inter-token-latency", "0")
	if err != nil {
		return "", fmt.Errorf("simulator: %w", err)
	}
	defer sim.Stop()
	simPID := sim.PID()
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: 2048\n      endpoints: [%s]\npricing: null\n",
		model, o.maxNumSeqs, sim.URL) + scratch.Unthrottled(o.noAdmission) + o.extraYAML
	st, stop, err := startStack(ctx, filepath.Join(dir, "sluice"), yml, dbURL, redisURL, progress)
	if err != nil {
		return "", err
	}
	defer stop()
	progress("simulator %s (pid %d), Sluice http://%s, temp %s", sim.URL, simPID, st.Addr, dir)

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil,
		DialContext:  (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns: 4 * o.concurrency, MaxIdleConnsPerHost: 2 * o.concurrency, DisableCompression: true}}
	url, auth := "http://"+st.Addr+"/v1/chat/completions", "Bearer "+st.AdminKey
	body := requestBody(o.maxTokens, o.stream)

	var served, failed atomic.Int64
	var lastJob atomic.Value // the id of a delivered job, for MEMORY USAGE
	var firstErr atomic.Value
	lctx, stopLoad := context.WithTimeout(ctx, o.duration)
	defer stopLoad()
	var wg sync.WaitGroup
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				id, err := soakOne(lctx, client, url, auth, body)
				if err != nil {
					if lctx.Err() == nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				served.Add(1)
				lastJob.Store(id)
			}
		}()
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Soak: %d clients, %s, synchronous chat completions\n\nCommand: `%s`\n\n", o.concurrency, o.duration, command())
	b.WriteString("| t | served | req/s (interval) | failed | Redis used_memory | Redis keys | used_memory above start, per key | stack RSS (submit+worker+settler) | Go heap in use | simulator RSS | last job's hash | its result stream |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	start := time.Now()
	var prev, used0 int64
	row := func() {
		n := served.Load()
		id, _ := lastJob.Load().(string)
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		used, keys := redisMemory(qctx, rdb)
		if used0 == 0 {
			used0 = used
		}
		perKey := "-"
		if keys > 0 && used > used0 {
			perKey = fmt.Sprintf("%d B", (used-used0)/keys)
		}
		jobB, resB := "-", "-"
		if id != "" {
			jobB, resB = memUsage(qctx, rdb, rkey.JobKey(id)), memUsage(qctx, rdb, rkey.ResultKey(id))
		}
		el := time.Since(start).Round(time.Second)
		line := fmt.Sprintf("| %s | %d | %.0f | %d | %s | %d | %s | %s | %s | %s | %s | %s |\n", el, n, float64(n-prev)/o.sample.Seconds(),
			failed.Load(), mib(used), keys, perKey, mib(rss(os.Getpid())), mib(heapInUse()), mib(rss(simPID)), jobB, resB)
		prev = n
		b.WriteString(line)
		fmt.Fprint(stderr, line)
	}
	row()
	tick := time.NewTicker(o.sample)
	for done := false; !done; {
		select {
		case <-tick.C:
			row()
		case <-lctx.Done():
			done = true
		}
	}
	tick.Stop()
	wg.Wait()
	if time.Since(start) > o.sample/2 {
		row()
	}
	if e, ok := firstErr.Load().(string); ok {
		fmt.Fprintf(&b, "\nFirst error: %s\n", e)
	}
	if failed.Load() > 0 {
		return b.String(), fmt.Errorf("%d requests failed", failed.Load())
	}
	return b.String(), nil
}

// soakOne sends one request and reads the whole answer; it returns the
// job's id (the Sluice-Job-Id header).
func soakOne(ctx context.Context, client *http.Client, url, auth string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %.200s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.Header.Get("Sluice-Job-Id"), nil
}

// redisMemory returns the server's used_memory and the database's key count.
func redisMemory(ctx context.Context, rdb redis.UniversalClient) (int64, int64) {
	var used int64
	if s, err := rdb.Info(ctx, "memory").Result(); err == nil {
		for _, line := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				used, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	keys, _ := rdb.DBSize(ctx).Result()
	return used, keys
}

// memUsage is MEMORY USAGE of a key in bytes, or "gone".
func memUsage(ctx context.Context, rdb redis.UniversalClient, key string) string {
	n, err := rdb.MemoryUsage(ctx, key).Result()
	if err != nil {
		return "gone"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// rss is a process's resident set size in bytes (0 if unknown).
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// heapInUse is this process's Go heap in use, in bytes.
func heapInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
