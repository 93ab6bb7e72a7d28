// Command sluice-bench measures what Sluice adds on top of its engine: the
// latency and throughput of chat completions sent through the platform
// (submit → Redis → worker → engine → back) against the same requests sent
// to the engine directly, both in one run.
//
// It starts one llm-d-inference-sim with zero latency, so every millisecond
// measured is HTTP, JSON, Redis and scheduling, and the whole Sluice stack in
// this process (devstack.Start, with its worker) against a fresh PostgreSQL
// database and a dedicated Redis database index. The two phases alternate
// over several rounds so that machine noise hits both, and the report gives
// per-phase medians across rounds as a Markdown table (stdout, and -out).
//
// Run it with `make bench`, or:
//
//	SLUICE_SIM=$PWD/bin/vllm-sim go run ./cmd/sluice-bench [-c 32] [-n 3000] [-rounds 3] [-stream] [-out FILE]
//
// Environment: BENCH_DATABASE_URL or TEST_DATABASE_URL (an admin URL; a
// database sluice_bench_<random> is created there and dropped at the end),
// TEST_REDIS_URL (its database index is replaced by -redis-db, which is
// flushed before and after), SLUICE_SIM (the simulator binary).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
)

const model = "bench-7b"

// options are the command-line settings.
type options struct {
	fleetSims   int // startFleet's simulators; 0 is 2 (tiers uses one)
	concurrency int
	requests    int
	warmup      int
	rounds      int
	maxTokens   int
	stream      bool
	out         string
	sim         string
	maxNumSeqs  int
	redisDB     int
	timeout     time.Duration
	itl         time.Duration
	keep        bool
	cpuprofile  string
	mode        string
	margin      int
	flood       int
	telemetry   bool
	noAdmission bool
	duration    time.Duration // soak: how long the load runs
	sample      time.Duration // soak: how often a row is printed
	extraYAML   string        // soak: configuration appended to the stack's
	lines       int           // batch: lines in the batch
	alsoOff     bool          // prefix: also run Sluice with placement off
	spillAfter  time.Duration // prefix: inference.prefix_cache.spill_after (0: the default)
	portkey     string        // overhead: the Portkey gateway's start-server.js, or "off"
	floor       bool          // overhead: also measure the skeleton of Sluice's shape (floor.go)
	clients     []int         // overhead: client counts measured in turn in one run (-clients); empty is just -c
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses flags, runs the benchmark and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "admission" {
		return benchAdmission(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "rollup" {
		return benchRollup(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.concurrency, "c", 32, "concurrent requests in flight")
	fs.IntVar(&o.requests, "n", 3000, "requests per phase per round")
	fs.IntVar(&o.warmup, "warmup", 300, "warm-up requests per phase before the first round")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs both phases, in alternating order")
	fs.IntVar(&o.maxTokens, "max-tokens", 16, "max_tokens of each request")
	fs.BoolVar(&o.stream, "stream", false, "stream the responses (SSE) and also measure time to first chunk")
	fs.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	fs.StringVar(&o.sim, "sim", os.Getenv("SLUICE_SIM"), "simulator binary (default $SLUICE_SIM or bin/vllm-sim)")
	fs.IntVar(&o.maxNumSeqs, "max-num-seqs", 64, "simulator --max-num-seqs and the model's max_batch_size")
	fs.IntVar(&o.redisDB, "redis-db", 9, "Redis database index used (flushed before and after)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	fs.DurationVar(&o.itl, "itl", 300*time.Millisecond, "streams: the simulator's time per token")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (logs) after the run")
	fs.StringVar(&o.mode, "mode", "overhead", "overhead (platform latency), saturation (two engines of 8 seqs, load beyond capacity), fairness (one user floods, two others send a few), cost (Redis commands, bytes and memory, PostgreSQL rows and CPU per request, on a private Redis), streams (-n slow streams at once through two instances and one worker; peak Redis connected_clients), waitlatency (time from an append to a waiter seeing it: the old blocking read, a direct wait, a shared wait) soak (-c clients for -duration, Redis memory and RSS every -sample) or tiers (one engine of 8 seqs saturated by -c streaming clients, a quarter service_tier=priority, half default, a quarter flex, -n requests in all; p50 time to first token per tier) or prefix (four KV-caching simulators, 16 shared system prompts, -c clients for -duration per phase: round robin, pinned by hand, Sluice over two workers; -placement-off adds Sluice with placement off)")
	fs.IntVar(&o.margin, "margin", 1, "saturation/fairness: dispatch.batch_margin")
	fs.IntVar(&o.flood, "flood", 5000, "fairness: jobs the flooding user enqueues")
	fs.BoolVar(&o.telemetry, "telemetry", false, "compare three Sluice stacks: telemetry off, metrics only (the default), metrics and tracing of every request (to a local OTLP sink); uses Redis databases -redis-db+1 and +2 too")
	fs.BoolVar(&o.noAdmission, "no-admission", false, "run with admission.disabled (to measure admission's share of the overhead)")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "soak: how long the load runs")
	fs.DurationVar(&o.sample, "sample", time.Minute, "soak: how often Redis memory, RSS and requests served are printed")
	fs.BoolVar(&o.alsoOff, "placement-off", false, "prefix: also run Sluice with inference.prefix_cache.placement false (free slots alone, as before)")
	fs.DurationVar(&o.spillAfter, "spill-after", 0, "prefix: inference.prefix_cache.spill_after for the Sluice phase (0: the default)")
	fs.StringVar(&o.extraYAML, "yaml", "", "soak: YAML appended to the stack's configuration (e.g. \"jobs: {sync_retention: 2m}\")")
	fs.IntVar(&o.lines, "lines", 10000, "batch: lines in the batch (-mode batch: interactive p50 of -n requests from -c clients without and during the batch)")
	fs.BoolVar(&o.floor, "floor", true, "overhead: also measure the floor skeleton (floor.go: the HTTP hop, the queue hop through Redis, one script each for the hold, the enqueue and the completion, batched exactly-once usage rows), the lower bound of Sluice's shape on this machine")
	fs.StringVar(&o.portkey, "portkey", defaultPortkey, "overhead: the pinned Portkey gateway's start-server.js (make bench-deps), run as a peer in front of the same simulator; \"off\" skips it")
	clients := fs.String("clients", "", "overhead: comma-separated client counts (e.g. 1,8,32) measured in turn against one stack, with a side-by-side table at the end; overrides -c")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured rounds (load generator and in-process Sluice) to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *clients != "" {
		for _, f := range strings.Split(*clients, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				fmt.Fprintf(stderr, "sluice-bench: -clients: %q is not a positive count\n", f)
				return 2
			}
			o.clients = append(o.clients, n)
		}
		o.concurrency = slices.Max(o.clients)
	}
	maxDB := 15 // Redis's default 16 databases
	if o.telemetry {
		maxDB = 13 // the telemetry comparison also uses -redis-db+1 and +2
	}
	if o.concurrency < 1 || o.requests < 1 || o.rounds < 1 || o.warmup < 0 || o.maxTokens < 1 || o.maxNumSeqs < 1 ||
		o.redisDB < 0 || o.redisDB > maxDB {
		fmt.Fprintf(stderr, "sluice-bench: -c, -n, -rounds, -max-tokens and -max-num-seqs must be positive, -warmup not negative, -redis-db 0..%d\n", maxDB)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var report string
	var err error
	switch o.mode {
	case "saturation":
		report, err = saturation(ctx, o, stderr)
	case "fairness":
		report, err = fairness(ctx, o, stderr)
	case "cost":
		report, err = cost(ctx, o, stderr)
	case "streams":
		report, err = streams(ctx, o, stderr)
	case "waitlatency":
		report, err = waitLatency(ctx, o, stderr)
	case "soak":
		report, err = soak(ctx, o, stderr)
	case "tiers":
		report, err = tiers(ctx, o, stderr)
	case "batch":
		report, err = batchBench(ctx, o, o.lines, stderr)
	case "prefix":
		report, err = prefixBench(ctx, o, stderr)
	default:
		report, err = bench(ctx, o, stderr)
	}
	if report != "" {
		fmt.Fprint(stdout, report)
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(report), 0o644); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench:", err)
		return 1
	}
	return 0
}

// bench sets everything up, runs the rounds and tears down; it returns the
// report (possibly with an error, e.g. when requests failed).
func bench(ctx context.Context, o options, stderr io.Writer) (report string, err error) {
	var stops []func() // run in reverse order at the end
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	loadBefore := loadAvg() // other work on the machine skews both phases

	run, err := newScratchRun(ctx, o, "sluice-bench-", progress)
	if err != nil {
		return "", err
	}
	defer run.close()
	dir, dbURL, redisURL, rdb := run.dir, run.dbURL, run.redisURL, run.rdb

	// The engine: zero latency, enough sequences that it is never the bottleneck.
	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return "", err
	}
	const maxModelLen = 2048
	sim, err := devstack.StartSim(ctx, bin, model, maxModelLen, o.maxNumSeqs, filepath.Join(dir, "sim.log"),
		"--time-to-first-token", "0", "--inter-token-latency", "0")
	if err != nil {
		return "", fmt.Errorf("simulator: %w", err)
	}
	defer sim.Stop()

	// The stack(s), in this process, each with its worker.
	// pricing: null drops the built-in prices of the built-in models, which
	// would otherwise fail validation (no such model).
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: %d\n      endpoints: [%s]\npricing: null\n",
		model, o.maxNumSeqs, maxModelLen, sim.URL)
	yml += scratch.Unthrottled(o.noAdmission)
	start := func(name, extra, redisURL string) (*devstack.Stack, error) {
		st, stop, err := startStack(ctx, filepath.Join(dir, name), yml+extra, dbURL, redisURL, progress)
		if err != nil {
			return nil, fmt.Errorf("stack %s: %w", name, err)
		}
		stops = append(stops, stop)
		return st, nil
	}
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	var phases []target
	if !o.telemetry {
		st, err := start("sluice", "", redisURL)
		if err != nil {
			return "", err
		}
		progress("simulator %s, Sluice http://%s, temp %s", sim.URL, st.Addr, dir)
		phases = []target{
			{name: "direct (simulator)", url: sim.URL + "/v1/chat/completions"},
			{name: "through Sluice", url: "http://" + st.Addr + "/v1/chat/completions", auth: "Bearer " + st.AdminKey},
		}
		if o.portkey != "off" {
			pk, err := startPortkey(ctx, o.portkey, dir)
			if err != nil {
				return "", fmt.Errorf("peer gateway (-portkey off skips it): %w", err)
			}
			stops = append(stops, pk.stop)
			progress("Portkey gateway %s", pk.url)
			phases = append(phases, pk.target(sim.URL+"/v1"))
		}
		if o.floor {
			fl, err := startFloor(ctx, redisURL, dbURL, sim.URL+"/v1/chat/completions", o.maxNumSeqs)
			if err != nil {
				return "", fmt.Errorf("floor skeleton (-floor=false skips it): %w", err)
			}
			stops = append(stops, fl.stop)
			progress("floor skeleton %s", fl.url)
			phases = append(phases, target{name: "floor (skeleton of the shape)", url: fl.url + "/v1/chat/completions"})
		}
	} else {
		sink, exports, err := otlpSink()
		if err != nil {
			return "", err
		}
		stops = append(stops, func() { sink.Close(); progress("OTLP sink received %d export requests", exports.Load()) })
		phases = []target{{name: "direct (simulator)", url: sim.URL + "/v1/chat/completions"}}
		// Each stack has a Redis database of its own, so no worker takes
		// another stack's jobs.
		for i, v := range []struct{ name, label, yml string }{
			{"off", "Sluice, telemetry off", "telemetry:\n  metrics_off: true\n"},
			{"metrics", "Sluice, metrics (default)", ""},
			{"traced", "Sluice, metrics + tracing", fmt.Sprintf("telemetry:\n  tracing:\n    enabled: true\n    endpoint: http://%s\n", sink.Addr)},
		} {
			url := redisURL
			if i > 0 {
				if url, err = scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), o.redisDB+i); err != nil {
					return "", err
				}
				extra, err := scratch.FlushRedis(ctx, url)
				if err != nil {
					return "", err
				}
				stops = append(stops, func() { scratch.Flush(context.WithoutCancel(ctx), extra); extra.Close() })
			}
			st, err := start(v.name, v.yml, url)
			if err != nil {
				return "", err
			}
			progress("%s: http://%s", v.label, st.Addr)
			phases = append(phases, target{name: v.label, url: "http://" + st.Addr + "/v1/chat/completions", auth: "Bearer " + st.AdminKey})
		}
	}

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		Proxy:               nil, // loopback only
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * o.concurrency,
		MaxIdleConnsPerHost: 2 * o.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	body := requestBody(o.maxTokens, o.stream)

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return "", err
		}
		defer pprof.StopCPUProfile()
	}
	levels := o.clients
	if len(levels) == 0 {
		levels = []int{o.concurrency}
	}
	var reports []string
	all := make([][][]phaseResult, len(levels)) // [level][phase][round]
	var failed int
	for li, c := range levels {
		oc := o
		oc.concurrency = c
		results, err := measure(ctx, oc, client, phases, body, progress)
		if err != nil {
			return strings.Join(reports, "\n"), err
		}
		all[li] = results
		info := machineInfo(ctx, rdb, dbURL)
		if loadBefore != "" {
			info += ", load average before the run " + loadBefore
		}
		reports = append(reports, render(oc, phases, results, info))
		for _, rs := range results {
			for _, r := range rs {
				failed += r.errors
			}
		}
	}
	if len(levels) > 1 {
		reports = append(reports, renderLevels(levels, phases, all))
	}
	report = strings.Join(reports, "\n")
	if failed > 0 {
		return report, fmt.Errorf("%d requests failed", failed)
	}
	return report, nil
}

// measure warms every phase up at o.concurrency clients, then runs the
// rounds, rotating the phase order; it returns [phase][round].
func measure(ctx context.Context, o options, client *http.Client, phases []target, body []byte, progress func(string, ...any)) ([][]phaseResult, error) {
	if o.warmup > 0 {
		for _, p := range phases {
			r := load(ctx, client, p, body, o.warmup, o.concurrency, o.stream)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if r.errors > 0 {
				return nil, fmt.Errorf("warm-up %s: %d of %d requests failed, e.g. %s", p.name, r.errors, o.warmup, r.firstErr)
			}
		}
	}
	results := make([][]phaseResult, len(phases)) // [phase][round]
	for round := range o.rounds {
		// Rotate the phase order so that machine noise hits every phase.
		order := make([]int, len(phases))
		for i := range order {
			order[i] = (i + round) % len(phases)
		}
		for _, i := range order {
			r := load(ctx, client, phases[i], body, o.requests, o.concurrency, o.stream)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			results[i] = append(results[i], r)
			progress("c=%d round %d/%d %-24s p50 %7.2f ms  p99 %7.2f ms  %8.1f req/s  errors %d",
				o.concurrency, round+1, o.rounds, phases[i].name, ms(r.lat.p50), ms(r.lat.p99), r.rps, r.errors)
		}
	}
	return results, nil
}

// renderLevels is the side-by-side table of -clients: each phase's p50 and
// p99 at every client count, the latency each adds to direct, and the
// throughput ratio to direct.
func renderLevels(levels []int, phases []target, all [][][]phaseResult) string {
	var b strings.Builder
	b.WriteString("## Side by side (medians across rounds)\n\n| clients | phase | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | of direct |\n|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for li, c := range levels {
		d := summarize(all[li][0])
		for i, p := range phases {
			s := summarize(all[li][i])
			ratio := 0.0
			if d.rps > 0 {
				ratio = s.rps / d.rps
			}
			fmt.Fprintf(&b, "| %d | %s | %.2f | %.2f | %+.2f | %+.2f | %.0f | %.3f |\n", c, p.name, s.p50, s.p99, s.p50-d.p50, s.p99-d.p99, s.rps, ratio)
		}
	}
	return b.String()
}

// target is one phase's endpoint.
type target struct {
	name    string
	url     string
	auth    string
	headers http.Header // more request headers (a peer gateway's routing)
}

func requestBody(maxTokens int, stream bool) []byte {
	b := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":%d`,
		model, maxTokens)
	if stream {
		b += `,"stream":true`
	}
	return []byte(b + "}")
}

// percentiles of one sample.
type percentiles struct{ p50, p90, p99 time.Duration }

// phaseResult is one phase of one round.
type phaseResult struct {
	lat      percentiles // whole response
	ttfb     percentiles // first SSE chunk (stream mode)
	rps      float64
	errors   int
	firstErr string
}

// load sends n requests with c in flight and measures them.
func load(ctx context.Context, client *http.Client, t target, body []byte, n, c int, stream bool) phaseResult {
	var next atomic.Int64
	lat := make([]time.Duration, n)
	ttfb := make([]time.Duration, n)
	ok := make([]bool, n)
	var mu sync.Mutex
	var errs int
	var firstErr string
	var wg sync.WaitGroup
	start := time.Now()
	for range min(c, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				total, first, err := one(ctx, client, t, body, stream)
				if err != nil {
					mu.Lock()
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					continue
				}
				lat[i], ttfb[i], ok[i] = total, first, true
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var good, goodTTFB []time.Duration
	for i := range n {
		if ok[i] {
			good = append(good, lat[i])
			goodTTFB = append(goodTTFB, ttfb[i])
		}
	}
	return phaseResult{lat: pct(good), ttfb: pct(goodTTFB), rps: float64(len(good)) / elapsed.Seconds(),
		errors: errs, firstErr: firstErr}
}

// one sends a request and reads the whole response; it returns the total
// time and, for streams, the time to the first data chunk.
func one(ctx context.Context, client *http.Client, t target, body []byte, stream bool) (total, first time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range t.headers {
		req.Header[k] = v
	}
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, 0, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if !stream {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, 0, err
		}
		total = time.Since(start)
		if !bytes.Contains(b, []byte(`"choices"`)) {
			return 0, 0, fmt.Errorf("no choices in the response: %.200s", b)
		}
		return total, total, nil
	}
	br := bufio.NewReaderSize(resp.Body, 16<<10)
	done := false
	for {
		line, err := br.ReadSlice('\n')
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if first == 0 {
				first = time.Since(start)
			}
			data = bytes.TrimSpace(data)
			if bytes.HasPrefix(data, []byte(`{"error"`)) {
				return 0, 0, fmt.Errorf("error event: %.200s", data)
			}
			if string(data) == "[DONE]" {
				done = true
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, 0, err
		}
	}
	total = time.Since(start)
	if !done {
		return 0, 0, errors.New("stream ended without [DONE]")
	}
	return total, first, nil
}

// pct returns nearest-rank percentiles.
func pct(d []time.Duration) percentiles {
	if len(d) == 0 {
		return percentiles{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return percentiles{p50: at(0.50), p90: at(0.90), p99: at(0.99)}
}

// median of per-round values.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary is one phase's medians across rounds.
type summary struct {
	p50, p90, p99, t50, t90, t99, rps float64
	errors                            int
}

func summarize(rs []phaseResult) summary {
	col := func(f func(phaseResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	s := summary{
		p50: col(func(r phaseResult) float64 { return ms(r.lat.p50) }),
		p90: col(func(r phaseResult) float64 { return ms(r.lat.p90) }),
		p99: col(func(r phaseResult) float64 { return ms(r.lat.p99) }),
		t50: col(func(r phaseResult) float64 { return ms(r.ttfb.p50) }),
		t90: col(func(r phaseResult) float64 { return ms(r.ttfb.p90) }),
		t99: col(func(r phaseResult) float64 { return ms(r.ttfb.p99) }),
		rps: col(func(r phaseResult) float64 { return r.rps }),
	}
	for _, r := range rs {
		s.errors += r.errors
	}
	return s
}

// render writes the Markdown report.
func render(o options, phases []target, results [][]phaseResult, info string) string {
	var b strings.Builder
	mode := "non-streaming"
	if o.stream {
		mode = "streaming, SSE"
	}
	fmt.Fprintf(&b, "## Platform overhead: Sluice against the engine called directly (%s)\n\n", mode)
	fmt.Fprintf(&b, "Command: `%s`\n\n", command())
	fmt.Fprintf(&b, "Machine: %s\n\n", info)
	fmt.Fprintf(&b, "Setup: one llm-d-inference-sim (`--time-to-first-token 0 --inter-token-latency 0 --max-num-seqs %d`), "+
		"model `%s`, `max_tokens` %d, %d requests in flight, %d requests per phase per round after %d warm-up requests, "+
		"%d rounds alternating the phase order. \"Through Sluice\" is the whole stack in one process (devstack.Start: "+
		"gateway → submit → Redis stream → worker (max_batch_size %d) → engine → result stream → submit) with a real PostgreSQL and Redis on the same machine; "+
		"the load generator, the engine, Redis and PostgreSQL share the same CPUs. Figures are medians across rounds of each round's percentile.\n\n",
		o.maxNumSeqs, model, o.maxTokens, o.concurrency, o.requests, o.warmup, o.rounds, o.maxNumSeqs)

	if len(phases) > 2 && !o.telemetry {
		b.WriteString("\"Through Portkey gateway\" is Portkey's open-source AI gateway (npm `@portkey-ai/gateway`, pinned in " +
			"`cmd/sluice-bench/portkey`, Node, `NODE_ENV=production`) in front of the same simulator (`x-portkey-provider: openai`, " +
			"`x-portkey-custom-host`): a stateless proxy doing none of Sluice's work (no keys, limits, funds holds, queue or metering).\n\n")
	}
	sums := make([]summary, len(phases))
	for i := range phases {
		sums[i] = summarize(results[i])
	}
	if o.stream {
		b.WriteString("| Phase | p50 ms | p90 ms | p99 ms | first chunk p50 ms | first chunk p99 ms | req/s | errors |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, p := range phases {
			s := sums[i]
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %d |\n", p.name, s.p50, s.p90, s.p99, s.t50, s.t99, s.rps, s.errors)
		}
	} else {
		b.WriteString("| Phase | p50 ms | p90 ms | p99 ms | req/s | errors |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|\n")
		for i, p := range phases {
			s := sums[i]
			fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.0f | %d |\n", p.name, s.p50, s.p90, s.p99, s.rps, s.errors)
		}
	}
	d, s := sums[0], sums[1]
	ratio := 0.0
	if d.rps > 0 {
		ratio = s.rps / d.rps
	}
	fmt.Fprintf(&b, "\nAdded latency: p50 **%+.2f ms**, p99 **%+.2f ms**", s.p50-d.p50, s.p99-d.p99)
	if o.stream {
		fmt.Fprintf(&b, "; first chunk p50 **%+.2f ms**, p99 **%+.2f ms**", s.t50-d.t50, s.t99-d.t99)
	}
	fmt.Fprintf(&b, ". Throughput through Sluice: **%.0f%%** of direct (%.0f vs %.0f req/s).\n\n", 100*ratio, s.rps, d.rps)
	for i := 2; i < len(sums) && !o.telemetry; i++ { // peers: against direct, beside Sluice
		p := sums[i]
		fmt.Fprintf(&b, "%s: added p50 **%+.2f ms**, p99 **%+.2f ms**", phases[i].name, p.p50-d.p50, p.p99-d.p99)
		if d.rps > 0 {
			fmt.Fprintf(&b, "; throughput **%.3f** of direct (%.0f req/s; Sluice %.3f)", p.rps/d.rps, p.rps, ratio)
		}
		b.WriteString(".\n\n")
	}
	for i := 2; i < len(sums) && o.telemetry; i++ { // -telemetry: each variant against telemetry off
		off, on := sums[1], sums[i]
		fmt.Fprintf(&b, "%s vs telemetry off: p50 **%+.2f ms**, p99 **%+.2f ms**", phases[i].name, on.p50-off.p50, on.p99-off.p99)
		if off.rps > 0 {
			fmt.Fprintf(&b, "; throughput **%.1f%%** (%.0f vs %.0f req/s)", 100*on.rps/off.rps, on.rps, off.rps)
		}
		b.WriteString(".\n\n")
	}

	b.WriteString("<details><summary>Per round</summary>\n\n")
	if o.stream {
		b.WriteString("| Round | Phase | p50 ms | p90 ms | p99 ms | first chunk p50 ms | req/s | errors |\n|---:|---|---:|---:|---:|---:|---:|---:|\n")
	} else {
		b.WriteString("| Round | Phase | p50 ms | p90 ms | p99 ms | req/s | errors |\n|---:|---|---:|---:|---:|---:|---:|\n")
	}
	for round := range o.rounds {
		for i, p := range phases {
			r := results[i][round]
			first := ""
			if o.stream {
				first = fmt.Sprintf(" %.2f |", ms(r.ttfb.p50))
			}
			fmt.Fprintf(&b, "| %d | %s | %.2f | %.2f | %.2f |%s %.0f | %d |\n", round+1, p.name,
				ms(r.lat.p50), ms(r.lat.p90), ms(r.lat.p99), first, r.rps, r.errors)
		}
	}
	b.WriteString("\n</details>\n")
	return b.String()
}

// command is the command line as a user would type it, flags included.
func command() string {
	parts := []string{"go run ./cmd/sluice-bench"}
	if sim := os.Getenv("SLUICE_SIM"); sim != "" {
		if wd, err := os.Getwd(); err == nil && strings.HasPrefix(sim, wd+"/") {
			sim = "$PWD/" + strings.TrimPrefix(sim, wd+"/")
		}
		parts = append([]string{"SLUICE_SIM=" + sim}, parts...)
	}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// machineInfo describes the machine and the services' versions.
func machineInfo(ctx context.Context, rdb redis.UniversalClient, dbURL string) string {
	parts := []string{fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				parts[0] += " (" + strings.TrimSpace(strings.TrimLeft(v, " \t:")) + ")"
				break
			}
		}
	}
	parts = append(parts, runtime.Version())
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if s, err := rdb.Info(qctx, "server").Result(); err == nil {
		for _, line := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				parts = append(parts, "Redis "+v)
			}
		}
	}
	if conn, err := pgx.Connect(qctx, dbURL); err == nil {
		var v string
		if conn.QueryRow(qctx, "SHOW server_version").Scan(&v) == nil {
			parts = append(parts, "PostgreSQL "+strings.Fields(v)[0])
		}
		conn.Close(qctx)
	}
	return strings.Join(parts, ", ")
}

// loadAvg returns the 1, 5 and 15 minute load averages, or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
