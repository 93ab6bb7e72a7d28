package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
)

// The prefix bench (-mode prefix): the workload of issue 18. Four
// simulators modelling prefix caching (--enable-kvcache: prefill is paid
// only for uncached tokens), 4 sequences and 256 blocks of 16 tokens each;
// -c clients of one account, each request one of 16 shared 600-word system
// prompts and a short question of its own. Three phases on the same
// engines, caches emptied between them: round robin straight to the
// engines, each prefix pinned to one engine by hand (the ideal), and
// Sluice with the four engines split over two workers (two each, as two
// GPU nodes would run them). Each phase runs -duration; the report gives
// throughput, mean latency and the share of prompt tokens the engines
// served from cache (their usage.prompt_tokens_details.cached_tokens).
const (
	prefixPrompts = 16
	prefixWords   = 600
	prefixEngines = 4
)

// prefixPhase is one phase's totals.
type prefixPhase struct {
	name           string
	ok, failed     int64
	latency        time.Duration // summed
	prompt, cached int64
	elapsed        time.Duration
	firstErr       atomic.Pointer[string]
}

func (p *prefixPhase) row() string {
	rps := float64(p.ok) / p.elapsed.Seconds()
	mean, share := 0.0, 0.0
	if p.ok > 0 {
		mean = float64(p.latency.Milliseconds()) / float64(p.ok)
	}
	if p.prompt > 0 {
		share = 100 * float64(p.cached) / float64(p.prompt)
	}
	return fmt.Sprintf("%-34s %9.1f %10.1f %9.1f %%  %6d ok %4d failed\n", p.name, rps, mean, share, p.ok, p.failed)
}

func prefixBench(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	loadBefore := loadAvg()
	run, err := newScratchRun(ctx, o, "sluice-bench-prefix-", progress)
	if err != nil {
		return "", err
	}
	defer run.close()
	dir := run.dir
	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return "", err
	}
	const maxModelLen = 4096
	const seqs = 4
	var sims []*devstack.Sim
	defer func() {
		for _, s := range sims {
			s.Stop()
		}
	}()
	// The simulator refuses --enable-kvcache without POD_IP, and names it
	// in its KV-event topic: each gets its own (it reads it at start).
	oldPod, hadPod := os.LookupEnv("POD_IP")
	for i := range prefixEngines {
		os.Setenv("POD_IP", fmt.Sprintf("127.0.0.%d", i+1)) //nolint:errcheck
		s, err := devstack.StartSim(ctx, bin, model, maxModelLen, seqs, filepath.Join(dir, fmt.Sprintf("sim%d.log", i)),
			"--enable-kvcache", "--kv-cache-size", "256", "--block-size", "16", "--time-to-first-token", "0",
			"--prefill-overhead", "5ms", "--prefill-time-per-token", "1ms", "--inter-token-latency", "2ms")
		if err != nil {
			return "", fmt.Errorf("simulator %d: %w", i, err)
		}
		sims = append(sims, s)
	}
	if hadPod {
		os.Setenv("POD_IP", oldPod) //nolint:errcheck
	} else {
		os.Unsetenv("POD_IP") //nolint:errcheck
	}

	rng := rand.New(rand.NewPCG(18, 18))
	vocab := strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no what can more out up into do about other time")
	prompts := make([]string, prefixPrompts)
	for i := range prompts {
		w := make([]string, prefixWords)
		for j := range w {
			w[j] = vocab[rng.IntN(len(vocab))]
		}
		prompts[i] = fmt.Sprintf("System prompt %d. ", i) + strings.Join(w, " ")
	}
	body := func(r *rand.Rand) (int, []byte) {
		p := r.IntN(prefixPrompts)
		b, _ := json.Marshal(map[string]any{"model": model, "max_tokens": o.maxTokens, "ignore_eos": true,
			"messages": []map[string]string{{"role": "system", "content": prompts[p]},
				{"role": "user", "content": fmt.Sprintf("question %d about topic %d", r.IntN(1_000_000), r.IntN(1000))}}})
		return p, b
	}
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, MaxIdleConnsPerHost: 4 * o.concurrency, DisableCompression: true}}
	reset := func() {
		for _, s := range sims {
			if resp, err := client.Post(s.URL+"/reset_prefix_cache", "application/json", nil); err == nil {
				resp.Body.Close()
			}
		}
	}
	// phase runs -c closed-loop clients for -duration; where(i, prefix)
	// is the URL and auth of client request i.
	phase := func(name string, where func(n int64, prefix int) (string, string)) *prefixPhase {
		reset()
		ph := &prefixPhase{name: name}
		var mu sync.Mutex
		var seq atomic.Int64
		pctx, cancel := context.WithTimeout(ctx, o.duration)
		defer cancel()
		start := time.Now()
		var wg sync.WaitGroup
		for c := range o.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(c), 7))
				for pctx.Err() == nil {
					p, b := body(r)
					url, auth := where(seq.Add(1), p)
					req, _ := http.NewRequestWithContext(pctx, http.MethodPost, url, bytes.NewReader(b))
					req.Header.Set("Content-Type", "application/json")
					if auth != "" {
						req.Header.Set("Authorization", auth)
					}
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						if pctx.Err() == nil {
							mu.Lock()
							ph.failed++
							mu.Unlock()
							msg := err.Error()
							ph.firstErr.CompareAndSwap(nil, &msg)
						}
						continue
					}
					rb, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					lat := time.Since(t0)
					var u struct {
						Usage struct {
							PromptTokens        int64 `json:"prompt_tokens"`
							PromptTokensDetails struct {
								CachedTokens int64 `json:"cached_tokens"`
							} `json:"prompt_tokens_details"`
						} `json:"usage"`
					}
					mu.Lock()
					if resp.StatusCode == http.StatusOK && json.Unmarshal(rb, &u) == nil {
						ph.ok++
						ph.latency += lat
						ph.prompt += u.Usage.PromptTokens
						ph.cached += u.Usage.PromptTokensDetails.CachedTokens
					} else if pctx.Err() == nil {
						ph.failed++
						msg := fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode, rb)
						ph.firstErr.CompareAndSwap(nil, &msg)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		ph.elapsed = time.Since(start)
		progress("%s", strings.TrimSpace(ph.row()))
		if e := ph.firstErr.Load(); e != nil {
			progress("%s: first failure: %s", name, *e)
		}
		return ph
	}
	engine := func(i int) string { return sims[i].URL + "/v1/chat/completions" }
	var phases []*prefixPhase
	phases = append(phases, phase("round robin, direct", func(n int64, _ int) (string, string) { return engine(int(n % prefixEngines)), "" }))
	phases = append(phases, phase("each prefix pinned by hand, direct", func(_ int64, p int) (string, string) { return engine(p % prefixEngines), "" }))

	// Sluice: two instances, each with its own worker for two engines,
	// on one Redis and one database; clients alternate between them.
	pepper := scratch.RandHex(32)
	runSluice := func(name, extra string) (*prefixPhase, error) {
		var stacks []*devstack.Stack
		var stops []func()
		defer func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		}()
		for w := range 2 {
			yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: %d\n      endpoints: [%s, %s]\n%spricing: null\n",
				model, seqs, maxModelLen, sims[2*w].URL, sims[2*w+1].URL, extra) + scratch.Unthrottled(false)
			st, stop, err := startStack(ctx, filepath.Join(dir, fmt.Sprintf("%s-w%d", strings.Fields(name)[0], w)), yml, run.dbURL, run.redisURL, progress,
				func(do *devstack.Options) { do.Config.Env.KeyPepper = pepper })
			if err != nil {
				return nil, fmt.Errorf("stack %d: %w", w, err)
			}
			stops = append(stops, stop)
			stacks = append(stacks, st)
		}
		auth := "Bearer " + stacks[len(stacks)-1].AdminKey // the last start revoked the earlier admin keys
		time.Sleep(2 * time.Second)                        // endpoints into rotation (health checks)
		return phase(name, func(n int64, _ int) (string, string) {
			return "http://" + stacks[n%2].Addr + "/v1/chat/completions", auth
		}), nil
	}
	spill := ""
	if o.spillAfter > 0 {
		spill = fmt.Sprintf("  prefix_cache: {spill_after: %s}\n", o.spillAfter)
	}
	ph, err := runSluice("Sluice, 2 workers x 2 engines", spill)
	if err != nil {
		return "", err
	}
	phases = append(phases, ph)
	if o.alsoOff { // placement off: how Sluice placed before
		ph, err := runSluice("Sluice, placement off", "  prefix_cache: {placement: false}\n")
		if err != nil {
			return "", err
		}
		phases = append(phases, ph)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "prefix cache: 4 simulators (--enable-kvcache, 256 blocks of 16, 4 seqs, prefill 5ms + 1ms/uncached token, 2ms/token),\n")
	fmt.Fprintf(&b, "%d clients of one account, %d shared %d-word system prompts, max_tokens %d, %s per phase (load %s before)\n\n",
		o.concurrency, prefixPrompts, prefixWords, o.maxTokens, o.duration, loadBefore)
	fmt.Fprintf(&b, "%-34s %9s %10s %11s\n", "phase", "req/s", "mean ms", "cached")
	for _, p := range phases {
		b.WriteString(p.row())
	}
	if len(phases) >= 3 && phases[0].ok > 0 {
		s := phases[2]
		fmt.Fprintf(&b, "\nSluice / round robin throughput: %.1fx (target >= 4x); Sluice cached %.1f %% (target >= 80 %%)\n",
			(float64(s.ok)/s.elapsed.Seconds())/(float64(phases[0].ok)/phases[0].elapsed.Seconds()),
			100*float64(s.cached)/float64(max(s.prompt, 1)))
	}
	return b.String(), nil
}
