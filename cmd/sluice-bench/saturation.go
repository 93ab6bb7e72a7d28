package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// fleet is two simulator endpoints with a fixed per-token latency and the
// whole stack in this process feeding them.
type fleet struct {
	sims   []*devstack.Sim
	st     *devstack.Stack
	rdb    redis.UniversalClient
	client *http.Client
	close  func()
}

// startFleet starts two simulators (--max-num-seqs seqs, ttft and itl) and
// the stack with the given batch margin, against a fresh database and Redis
// index.
func startFleet(ctx context.Context, o options, seqs int, ttft, itl time.Duration, progress func(string, ...any)) (*fleet, error) {
	f := &fleet{}
	var closers []func()
	f.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*fleet, error) { f.close(); return nil, err }
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() {
		if o.keep {
			progress("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})
	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "BENCH_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, "sluice_bench_")
	if err != nil {
		return fail(err)
	}
	closers = append(closers, dropDB)
	redisURL, err := scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), o.redisDB)
	if err != nil {
		return fail(err)
	}
	if f.rdb, err = scratch.FlushRedis(ctx, redisURL); err != nil {
		return fail(err)
	}
	closers = append(closers, func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		scratch.Flush(fctx, f.rdb) //nolint:errcheck
		f.rdb.Close()
	})
	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return fail(err)
	}
	var urls []string
	for i := range cmp.Or(o.fleetSims, 2) {
		s, err := devstack.StartSim(ctx, bin, model, 2048, seqs, filepath.Join(dir, fmt.Sprintf("sim%d.log", i)),
			"--time-to-first-token", ttft.String(), "--inter-token-latency", itl.String())
		if err != nil {
			return fail(fmt.Errorf("simulator: %w", err))
		}
		closers = append(closers, s.Stop)
		f.sims = append(f.sims, s)
		urls = append(urls, s.URL)
	}
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: 2048\n      endpoints: [%s]\npricing: null\ndispatch:\n  batch_margin: %d\n",
		model, seqs, strings.Join(urls, ", "), o.margin) + scratch.Unthrottled(false)
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		return fail(err)
	}
	cfg.Env = config.Env{DatabaseURL: dbURL, RedisURL: redisURL, KeyPepper: scratch.RandHex(32),
		WebhookSecret: scratch.RandHex(32), Addr: "127.0.0.1:0", WorkerName: "bench-worker"}
	logf, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, func() { logf.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	stackCtx, stopStack := context.WithCancel(ctx)
	f.st, err = devstack.Start(stackCtx, devstack.Options{Config: cfg, Log: slog.New(slog.NewJSONHandler(logf, nil)),
		Dir: filepath.Join(dir, "state")}, ln)
	if err != nil {
		stopStack()
		ln.Close()
		return fail(fmt.Errorf("stack: %w", err))
	}
	closers = append(closers, func() {
		stopStack()
		stopped := make(chan error, 1)
		go func() { stopped <- f.st.Wait() }()
		select {
		case <-stopped:
		case <-time.After(45 * time.Second):
			progress("the stack did not stop within 45s")
		}
	})
	f.client = &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{Proxy: nil,
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: 90 * time.Second, DisableCompression: true}}
	progress("simulators %s, Sluice http://%s, temp %s", strings.Join(urls, " "), f.st.Addr, dir)
	return f, nil
}

// engineSampler scrapes the simulators' /metrics while a phase runs.
type engineSampler struct {
	mu               sync.Mutex
	running, waiting []float64 // per scrape, summed over the endpoints
}

func (s *engineSampler) run(ctx context.Context, sims []*devstack.Sim, every time.Duration) {
	clients := make([]*engine.Client, len(sims))
	for i, sm := range sims {
		clients[i] = engine.New(sm.URL, 2)
	}
	for ctx.Err() == nil {
		var r, w float64
		ok := true
		for _, c := range clients {
			l, err := c.Metrics(ctx, engine.KindVLLM, time.Second)
			if err != nil {
				ok = false
				break
			}
			r += float64(l.Running) / float64(len(clients))
			w += float64(l.Waiting) / float64(len(clients))
		}
		if ok {
			s.mu.Lock()
			s.running, s.waiting = append(s.running, r), append(s.waiting, w)
			s.mu.Unlock()
		}
		sleep(ctx, every)
	}
}

func (s *engineSampler) summary() (meanRun, meanWait, p10Run float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.running) == 0 {
		return 0, 0, 0
	}
	var sr, sw float64
	for i := range s.running {
		sr += s.running[i]
		sw += s.waiting[i]
	}
	sorted := slices.Clone(s.running)
	slices.Sort(sorted)
	return sr / float64(len(sorted)), sw / float64(len(sorted)), sorted[len(sorted)/10]
}

// saturation compares throughput through Sluice, under load beyond capacity,
// with a client driving the two simulators directly at its best concurrency.
func saturation(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	const seqs = 8
	ttft, itl := 20*time.Millisecond, 10*time.Millisecond
	f, err := startFleet(ctx, o, seqs, ttft, itl, progress)
	if err != nil {
		return "", err
	}
	defer f.close()
	body := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hello"}],"max_tokens":%d,"ignore_eos":true}`, model, o.maxTokens))
	direct := func(c, n int) phaseResult {
		// Half the clients on each endpoint: a client at its best.
		var wg sync.WaitGroup
		rs := make([]phaseResult, len(f.sims))
		start := time.Now()
		for i, s := range f.sims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs[i] = load(ctx, f.client, target{url: s.URL + "/v1/chat/completions"}, body, n/len(f.sims), c/len(f.sims), false)
			}()
		}
		wg.Wait()
		out := rs[0]
		out.errors += rs[1].errors
		out.rps = float64(n/len(f.sims)*len(f.sims)-out.errors) / time.Since(start).Seconds()
		return out
	}
	through := target{url: "http://" + f.st.Addr + "/v1/chat/completions", auth: "Bearer " + f.st.AdminKey}
	capacity := float64(2*seqs) / (ttft + time.Duration(o.maxTokens)*itl).Seconds()
	progress("capacity about %.1f req/s (2 × %d seqs, %d tokens × %s + %s)", capacity, seqs, o.maxTokens, itl, ttft)
	load(ctx, f.client, through, body, 64, 32, false) // warm-up
	type row struct {
		name      string
		rps       []float64
		run, wait []float64
		p10       []float64
		errs      int
	}
	concs := []int{16, 18, 24, 32}
	rows := map[string]*row{}
	get := func(name string) *row {
		if rows[name] == nil {
			rows[name] = &row{name: name}
		}
		return rows[name]
	}
	for round := range o.rounds {
		for _, c := range concs {
			r := direct(c, o.requests)
			x := get(fmt.Sprintf("direct, %d in flight", c))
			x.rps, x.errs = append(x.rps, r.rps), x.errs+r.errors
			progress("round %d direct c=%d: %.1f req/s errors %d", round+1, c, r.rps, r.errors)
		}
		var smp engineSampler
		sctx, stop := context.WithCancel(ctx)
		go smp.run(sctx, f.sims, 50*time.Millisecond)
		r := load(ctx, f.client, through, body, o.requests, o.concurrency, false)
		stop()
		mr, mw, p10 := smp.summary()
		x := get(fmt.Sprintf("through Sluice, %d clients", o.concurrency))
		x.rps, x.run, x.wait, x.p10, x.errs = append(x.rps, r.rps), append(x.run, mr), append(x.wait, mw), append(x.p10, p10), x.errs+r.errors
		progress("round %d through Sluice: %.1f req/s errors %d; engines running %.2f (p10 %.1f) waiting %.2f", round+1, r.rps, r.errors, mr, p10, mw)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Saturation: 2 simulators, --max-num-seqs %d, ttft %s, %s per token, %d tokens (capacity about %.1f req/s); batch_margin %d; %d requests per phase, %d rounds; medians.\n\n",
		seqs, ttft, itl, o.maxTokens, capacity, o.margin, o.requests, o.rounds)
	b.WriteString("| phase | req/s | engine running (mean per endpoint) | running p10 | engine waiting (mean) | errors |\n|---|---:|---:|---:|---:|---:|\n")
	best := 0.0
	for _, c := range concs {
		x := get(fmt.Sprintf("direct, %d in flight", c))
		m := median(x.rps)
		best = max(best, m)
		fmt.Fprintf(&b, "| %s | %.1f | | | | %d |\n", x.name, m, x.errs)
	}
	x := get(fmt.Sprintf("through Sluice, %d clients", o.concurrency))
	fmt.Fprintf(&b, "| %s | %.1f | %.2f | %.1f | %.2f | %d |\n", x.name, median(x.rps), median(x.run), median(x.p10), median(x.wait), x.errs)
	ratio := median(x.rps) / best
	fmt.Fprintf(&b, "\nThroughput through Sluice / best direct: **%.1f %%**\n", 100*ratio)
	if x.errs > 0 {
		return b.String(), fmt.Errorf("%d requests through Sluice failed", x.errs)
	}
	return b.String(), nil
}

// fairness: a free user floods the queue, then a pro user and a second free
// user each send a few jobs; each one's wait (claim − enqueue) and the
// flooder's throughput.
func fairness(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	const seqs = 8
	f, err := startFleet(ctx, o, seqs, 10*time.Millisecond, 2*time.Millisecond, progress)
	if err != nil {
		return "", err
	}
	defer f.close()
	d := f.st.Deps
	keys := map[string]string{}
	for _, u := range []struct{ name, tier string }{{"flood-free", sluice.TierFree}, {"pro", sluice.TierPro}, {"other-free", sluice.TierFree}} {
		usr, err := d.DB.UpsertUser(ctx, u.name+"@bench.local", u.tier, sluice.RoleUser)
		if err != nil {
			return "", err
		}
		if keys[u.name], err = devstack.CreateKey(ctx, d, usr.ID, "bench"); err != nil {
			return "", err
		}
	}
	body := fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"ignore_eos":true}}`, model, o.maxTokens)
	submit := func(user string, n, c int) ([]string, error) {
		ids := make([]string, n)
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		next := make(chan int)
		for range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					id, err := postJob(ctx, f.client, "http://"+f.st.Addr, keys[user], body)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					ids[i] = id
					mu.Unlock()
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		return ids, firstErr
	}
	floodStart := time.Now()
	flood, err := submit("flood-free", o.flood, 16)
	if err != nil {
		return "", fmt.Errorf("flood: %w", err)
	}
	progress("%d flood jobs enqueued in %s", len(flood), time.Since(floodStart).Round(time.Millisecond))
	sleep(ctx, 2*time.Second) // under saturation
	pro, err := submit("pro", 20, 20)
	if err != nil {
		return "", err
	}
	other, err := submit("other-free", 20, 20)
	if err != nil {
		return "", err
	}
	// Wait for everything to finish.
	all := append(append(slices.Clone(flood), pro...), other...)
	for {
		done, err := finished(ctx, f.rdb, all)
		if err != nil {
			return "", err
		}
		if done == len(all) {
			break
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		sleep(ctx, 500*time.Millisecond)
	}
	times := func(ids []string) (waits []time.Duration, ends []int64, err error) {
		for _, id := range ids {
			h, err := f.rdb.HMGet(ctx, rkey.JobKey(id), "created", "started", "ended", "status").Result()
			if err != nil {
				return nil, nil, err
			}
			c, _ := strconv.ParseInt(fmt.Sprint(h[0]), 10, 64)
			s, _ := strconv.ParseInt(fmt.Sprint(h[1]), 10, 64)
			e, _ := strconv.ParseInt(fmt.Sprint(h[2]), 10, 64)
			if fmt.Sprint(h[3]) != string(sluice.JobSucceeded) {
				return nil, nil, fmt.Errorf("job %s ended %v", id, h[3])
			}
			waits = append(waits, time.Duration(s-c)*time.Millisecond)
			ends = append(ends, e)
		}
		return waits, ends, nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Fairness: 2 simulators, --max-num-seqs %d, %d tokens of 2 ms + 10 ms to first; a free user enqueues %d async jobs, 2 s later a pro user and a second free user send 20 each.\n\n",
		seqs, o.maxTokens, o.flood)
	b.WriteString("| user | jobs | wait p50 ms | wait p95 ms | wait max ms |\n|---|---:|---:|---:|---:|\n")
	var floodEnds []int64
	for _, u := range []struct {
		name string
		ids  []string
	}{{"free (flooding)", flood}, {"pro", pro}, {"free (second)", other}} {
		w, ends, err := times(u.ids)
		if err != nil {
			return "", err
		}
		if u.name == "free (flooding)" {
			floodEnds = ends
		}
		slices.Sort(w)
		q := func(p float64) float64 { return ms(w[min(len(w)-1, int(p*float64(len(w))))]) }
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f |\n", u.name, len(u.ids), q(0.5), q(0.95), ms(w[len(w)-1]))
	}
	slices.Sort(floodEnds)
	span := float64(floodEnds[len(floodEnds)-1]-floodEnds[0]) / 1000
	fmt.Fprintf(&b, "\nFlooding free user's throughput: %d jobs in %.1f s = **%.1f jobs/s** (first to last completion).\n",
		len(floodEnds), span, float64(len(floodEnds))/span)
	return b.String(), nil
}

// postJob submits one async job and returns its id.
func postJob(ctx context.Context, c *http.Client, base, key, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/jobs", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var js sluice.JobState
	if err := json.NewDecoder(resp.Body).Decode(&js); err != nil || resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("submit: status %d: %v", resp.StatusCode, err)
	}
	return js.ID, nil
}

// finished counts the jobs in a final state.
func finished(ctx context.Context, rdb redis.UniversalClient, ids []string) (int, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, rkey.JobKey(id), "status")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		switch sluice.JobStatus(c.Val()) {
		case sluice.JobSucceeded, sluice.JobFailed, sluice.JobCancelled, sluice.JobExpired:
			n++
		}
	}
	return n, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
