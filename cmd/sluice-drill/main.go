// Command sluice-drill is the kill -9 drill: it proves that a GPU worker
// killed mid-run loses no job and bills none twice.
//
// It builds the real binaries (gpuworker and sluice), starts one simulator
// engine with a per-token latency so each job runs for about a second, the
// functions (`sluice dev --no-worker`) and two gpuworker processes, w1 and
// w2, against a fresh PostgreSQL database and a dedicated, flushed Redis
// database index. It submits async jobs, kills w1 with SIGKILL while it runs
// some of them, and waits for w2 to reclaim them (XAUTOCLAIM after
// worker.claim_idle). It then checks that every job succeeded, that each
// completed exactly once, and that inference_requests holds exactly one
// usage row per job and no other. The exit status is non-zero if any check
// fails.
//
// Run it with `make drill`, or:
//
//	SLUICE_SIM=$PWD/bin/vllm-sim go run ./cmd/sluice-drill [-jobs 100]
//
// `sluice-drill money` is the money drill (money.go); `sluice-drill failover`
// kills a Redis Cluster master under load (failover.go).
//
// Environment: DRILL_DATABASE_URL or TEST_DATABASE_URL (an admin URL; a
// database sluice_drill_<random> is created there and dropped at the end),
// TEST_REDIS_URL (its database index is replaced by -redis-db), SLUICE_SIM.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

const model = "drill-7b"

// options are the command-line settings.
type options struct {
	mode      string
	jobs      int
	maxTokens int
	killAfter int
	claimIdle time.Duration
	redisDB   int
	sim       string
	wait      time.Duration
	timeout   time.Duration
	keep      bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses flags, runs the drill and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "money" {
		return runMoney(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "batch" {
		return runBatchDrill(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "failover" {
		return runFailover(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("sluice-drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.mode, "mode", "kill", "kill (kill -9 a worker), endpoint (an engine dies and comes back), redis (Redis with appendonly restarts), failures (the engine fails 10% of requests)")
	fs.IntVar(&o.jobs, "jobs", 100, "async jobs to submit")
	fs.IntVar(&o.maxTokens, "max-tokens", 40, "tokens each job generates (about 20 ms each)")
	fs.IntVar(&o.killAfter, "kill-after", 10, "kill w1 once this many jobs have succeeded (and w1 runs some)")
	fs.DurationVar(&o.claimIdle, "claim-idle", 3*time.Second, "worker.claim_idle: how long a dead worker's jobs wait before reclaim")
	fs.IntVar(&o.redisDB, "redis-db", 10, "Redis database index used (flushed before and after)")
	fs.StringVar(&o.sim, "sim", os.Getenv("SLUICE_SIM"), "simulator binary (default $SLUICE_SIM or bin/vllm-sim)")
	fs.DurationVar(&o.wait, "wait", 120*time.Second, "bound on the wait for all jobs to finish after the kill")
	fs.DurationVar(&o.timeout, "timeout", 6*time.Minute, "bound on the whole drill")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (binaries, logs) even when the drill passes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.jobs < 1 || o.maxTokens < 1 || o.killAfter < 0 || o.killAfter >= o.jobs || o.claimIdle < time.Second ||
		o.redisDB < 0 || o.redisDB > 15 || !slices.Contains([]string{"kill", "endpoint", "redis", "failures"}, o.mode) {
		fmt.Fprintln(stderr, "sluice-drill: need -jobs > -kill-after >= 0, -max-tokens > 0, -claim-idle >= 1s, -redis-db 0..15")
		return 2
	}
	d := &drill{o: o, out: stdout, errw: stderr}
	return verdict(ctx, o.timeout, d.run, "sluice-drill", stdout, stderr)
}

// verdict runs a drill within timeout and reports PASS or FAIL as its exit code.
func verdict(ctx context.Context, timeout time.Duration, run func(context.Context) error, name string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := run(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			err = errors.New("interrupted")
		}
		fmt.Fprintln(stderr, name+": FAIL:", err)
		return 1
	}
	fmt.Fprintln(stdout, "PASS")
	return 0
}

// drill holds the state of one run.
type drill struct {
	o         options
	out, errw io.Writer
	dir       string
	env       []string
	base      string // http://addr of the functions
	key       string // admin API key
	rdb       redis.UniversalClient
	dbURL     string
	hc        *http.Client
	procs     []*proc
	redis     *proc // the drill's own Redis (mode redis)
}

func (d *drill) logf(format string, a ...any) {
	fmt.Fprintf(d.errw, "%s sluice-drill: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
}

// run is the drill; the deferred steps clean up whatever happened.
func (d *drill) run(ctx context.Context) (err error) {
	// 1-2. The binaries, as deployed, and a fresh database; then a Redis index.
	cleanup, err := d.setup(ctx, "sluice-drill")
	if err != nil {
		return err
	}
	defer func() { cleanup(err != nil || d.o.keep) }()
	redisURL, err := scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), d.o.redisDB)
	if err != nil {
		return err
	}
	if d.o.mode == "redis" {
		// A Redis of our own, as production runs it, that the drill may restart.
		if redisURL, err = d.startRedis(ctx); err != nil {
			return err
		}
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	d.rdb = redis.NewClient(opt)
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if d.redis == nil { // the drill's own Redis is gone with its folder
			d.rdb.FlushDB(fctx)
		}
		d.rdb.Close()
	}()
	if err := d.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}

	// 3. The engines, slow enough that jobs are mid-flight at the fault.
	sims, err := d.startSims(ctx)
	if err != nil {
		return err
	}
	defer d.stopAll() // first of the cleanups: the processes go before their database and Redis

	// 4. Configuration and environment shared by every process.
	cfgPath := filepath.Join(d.dir, "sluice.yaml")
	yml := fmt.Sprintf(`inference:
  models:
    - name: %s
      max_batch_size: 8
      max_model_len: 2048
      endpoints: [%s]
pricing: null # the built-in prices name the built-in models
worker:
  claim_idle: %s
  heartbeat: 1s
  listen: "off" # several workers share this machine: no metrics port each
`, model, strings.Join(simURLs(sims), ", "), d.o.claimIdle) + scratch.Unthrottled(false)
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		return err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	d.base = "http://" + addr
	d.env = append(cleanEnv(), "DATABASE_URL="+d.dbURL, "REDIS_URL="+redisURL, "SLUICE_KEY_PEPPER="+scratch.RandHex(32),
		"SLUICE_WEBHOOK_SECRET="+scratch.RandHex(32), "SLUICE_ADDR="+addr, "SLUICE_CONFIG="+cfgPath)
	d.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}

	// 5. The functions, then the two workers.
	fn, err := d.startFunctions(ctx)
	if err != nil {
		return err
	}
	w1, err := d.start("w1", filepath.Join(d.dir, "gpuworker"), []string{"SLUICE_WORKER_NAME=w1"})
	if err != nil {
		return err
	}
	w2, err := d.start("w2", filepath.Join(d.dir, "gpuworker"), []string{"SLUICE_WORKER_NAME=w2"})
	if err != nil {
		return err
	}
	stream := rkey.StreamKey(model, 0) // the admin is enterprise: priority 0
	if err := d.waitConsumers(ctx, stream, []*proc{w1, w2}); err != nil {
		return err
	}

	// 6. The jobs.
	ids, err := d.submit(ctx)
	if err != nil {
		return err
	}
	submitted := time.Now()
	d.logf("submitted %d jobs", len(ids))

	// 7. The fault.
	var inflight []string
	var killedAt time.Time
	switch d.o.mode {
	case "kill": // kill -9 w1 while it runs jobs.
		inflight, killedAt, err = d.killWhenBusy(ctx, w1, stream, ids)
	case "endpoint":
		killedAt, err = d.afterProgress(ctx, ids, func() error { return d.restart(ctx, &sims[0], syscall.SIGKILL, 3*time.Second) })
	case "redis":
		killedAt, err = d.afterProgress(ctx, ids, func() error { return d.restart(ctx, &d.redis, syscall.SIGTERM, 2*time.Second) })
	}
	if err != nil {
		return err
	}

	// 8. Every job must end; w1's must be taken over by w2.
	states, recovered, err := d.waitTerminal(ctx, ids, inflight, killedAt)
	if err != nil {
		return err
	}
	allDone := time.Now()
	if w2.exited() || fn.exited() || (d.o.mode != "kill" && w1.exited()) {
		return fmt.Errorf("a process died during the drill (w1 exited: %v, w2 exited: %v, sluice exited: %v); see %s",
			w1.exited(), w2.exited(), fn.exited(), d.dir)
	}

	// 9. Usage rows, once written.
	rows, err := d.usage(ctx, ids)
	if err != nil {
		return err
	}
	meta, err := d.jobMeta(ctx, ids)
	if err != nil {
		return err
	}
	dead, _ := d.rdb.XLen(ctx, rkey.DeadKey(model)).Result()

	if d.o.mode != "kill" {
		return d.verify(ids, states, meta, rows, dead, submitted, killedAt, allDone)
	}
	return d.report(ids, states, inflight, meta, rows, dead, submitted, killedAt, recovered, allDone)
}

// proc is a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// start runs bin with the drill's environment plus extra, logging to
// <dir>/<name>.log. Children get their own process group, so a terminal's
// Ctrl-C reaches only the drill, which then stops them in order.
// startFunctions starts the functions (`sluice dev --no-worker`) on the
// drill's state folder, waits until they answer, and reads the admin key.
func (d *drill) startFunctions(ctx context.Context) (*proc, error) {
	state := filepath.Join(d.dir, "state")
	fn, err := d.start("sluice", filepath.Join(d.dir, "sluice"), nil, "dev", "--no-worker", "--dir", state)
	if err != nil {
		return nil, err
	}
	if err := d.waitReady(ctx, fn); err != nil {
		return nil, err
	}
	k, err := os.ReadFile(filepath.Join(state, "admin.key"))
	if err != nil {
		return nil, fmt.Errorf("admin key: %w", err)
	}
	d.key = strings.TrimSpace(string(k))
	return fn, nil
}

func (d *drill) start(name, bin string, extra []string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(slices.Clone(d.env), extra...)
	if filepath.Base(bin) == "gpuworker" {
		// The worker verifies no credential: it runs without the key
		// pepper, as a deployment should give it (issue 15).
		cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "SLUICE_KEY_PEPPER") })
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	d.procs = append(d.procs, p)
	d.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return p, nil
}

// stopAll stops the children, last started first: SIGTERM, then SIGKILL
// after 15 seconds.
func (d *drill) stopAll() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		if p.exited() {
			continue
		}
		p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			d.logf("%s did not stop on SIGTERM; killing it", p.name)
			p.cmd.Process.Kill() //nolint:errcheck
			<-p.done
		}
	}
	d.procs = nil
}

// waitReady waits for GET /readyz to answer 200.
func (d *drill) waitReady(ctx context.Context, p *proc) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("sluice dev exited: %v; see %s", p.err, filepath.Join(d.dir, "sluice.log"))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/readyz", nil)
		if resp, err := d.hc.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body) //nolint:errcheck
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("sluice dev did not become ready within 60s")
}

// waitConsumers waits until every worker reads the job stream.
func (d *drill) waitConsumers(ctx context.Context, stream string, ws []*proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, w := range ws {
			if w.exited() {
				return fmt.Errorf("worker %s exited: %v; see %s", w.name, w.err, filepath.Join(d.dir, w.name+".log"))
			}
		}
		cs, err := d.rdb.XInfoConsumers(ctx, stream, rkey.GroupWorkers).Result()
		if err == nil {
			seen := 0
			for _, w := range ws {
				if slices.ContainsFunc(cs, func(c redis.XInfoConsumer) bool { return c.Name == w.name }) {
					seen++
				}
			}
			if seen == len(ws) {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return errors.New("the workers did not start reading the job stream within 30s")
}

// submit posts the async jobs and returns their ids.
func (d *drill) submit(ctx context.Context) ([]string, error) {
	ids := make([]string, 0, d.o.jobs)
	for i := range d.o.jobs {
		body := fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"drill job %d"}],"max_tokens":%d,"ignore_eos":true}}`,
			model, i, d.o.maxTokens)
		var js sluice.JobState
		st, err := d.call(ctx, http.MethodPost, "/v1/jobs", []byte(body), &js)
		if err != nil {
			return nil, fmt.Errorf("submit job %d: %w", i, err)
		}
		if st != http.StatusAccepted || js.ID == "" {
			return nil, fmt.Errorf("submit job %d: status %d, id %q", i, st, js.ID)
		}
		ids = append(ids, js.ID)
	}
	return ids, nil
}

// call sends one API request and decodes a JSON answer into out.
func (d *drill) call(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+d.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, json.Unmarshal(b, out)
}

// statuses returns each job's status as its owner sees it. A 503 is what a
// client gets while Redis restarts or loads its data (LOADING: fail closed),
// so it is asked again, as a client would, for up to 30 s.
func (d *drill) statuses(ctx context.Context, ids []string) (map[string]sluice.JobState, error) {
	out := make(map[string]sluice.JobState, len(ids))
	for _, id := range ids {
		var js sluice.JobState
		for giveUp := time.Now().Add(30 * time.Second); ; {
			st, err := d.call(ctx, http.MethodGet, "/v1/jobs/"+id, nil, &js)
			if err == nil {
				break
			}
			if st != http.StatusServiceUnavailable || time.Now().After(giveUp) {
				return nil, err
			}
			time.Sleep(200 * time.Millisecond)
		}
		out[id] = js
	}
	return out, nil
}

func count(states map[string]sluice.JobState, f func(sluice.JobStatus) bool) int {
	n := 0
	for _, s := range states {
		if f(s.Status) {
			n++
		}
	}
	return n
}

func succeeded(s sluice.JobStatus) bool { return s == sluice.JobSucceeded }

// killWhenBusy waits until -kill-after jobs have succeeded while w1 holds
// pending entries, then kills w1 with SIGKILL. It returns the jobs w1 was
// running at that moment.
func (d *drill) killWhenBusy(ctx context.Context, w1 *proc, stream string, ids []string) ([]string, time.Time, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if w1.exited() {
			return nil, time.Time{}, fmt.Errorf("w1 exited before the kill: %v", w1.err)
		}
		states, err := d.statuses(ctx, ids)
		if err != nil {
			return nil, time.Time{}, err
		}
		pend, err := d.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: rkey.GroupWorkers,
			Start: "-", End: "+", Count: int64(len(ids)), Consumer: "w1"}).Result()
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("XPENDING: %w", err)
		}
		if done := count(states, succeeded); done >= d.o.killAfter && len(pend) > 0 {
			if err := syscall.Kill(w1.cmd.Process.Pid, syscall.SIGKILL); err != nil {
				return nil, time.Time{}, fmt.Errorf("kill w1: %w", err)
			}
			killedAt := time.Now()
			<-w1.done
			// What w1 held: nothing changes these jobs until the reclaim, claim_idle later.
			meta, err := d.jobMeta(ctx, ids)
			if err != nil {
				return nil, time.Time{}, err
			}
			var inflight []string
			for _, id := range ids {
				if m := meta[id]; m.worker == "w1" && !sluice.JobStatus(m.status).Terminal() {
					inflight = append(inflight, id)
				}
			}
			d.logf("kill -9 w1 (pid %d): %d jobs succeeded, w1 had %d pending entries, %d jobs running",
				w1.cmd.Process.Pid, done, len(pend), len(inflight))
			if len(inflight) == 0 {
				return nil, time.Time{}, errors.New("w1 ran no job when it was killed: the drill proved nothing")
			}
			return inflight, killedAt, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, time.Time{}, err
		}
	}
	return nil, time.Time{}, errors.New("w1 never ran jobs while others finished, within 60s")
}

// waitTerminal polls the jobs until all are final; it returns their states
// and when the last of w1's in-flight jobs became final.
func (d *drill) waitTerminal(ctx context.Context, ids, inflight []string, killedAt time.Time) (map[string]sluice.JobState, time.Time, error) {
	deadline := time.Now().Add(d.o.wait)
	var recovered time.Time
	lastLog := time.Now()
	for {
		states, err := d.statuses(ctx, ids)
		if err != nil {
			return nil, time.Time{}, err
		}
		if recovered.IsZero() && !slices.ContainsFunc(inflight, func(id string) bool { return !states[id].Status.Terminal() }) {
			recovered = time.Now()
			d.logf("all %d jobs w1 was running are final, %.1fs after the kill", len(inflight), recovered.Sub(killedAt).Seconds())
		}
		final := count(states, sluice.JobStatus.Terminal)
		if final == len(ids) {
			return states, recovered, nil
		}
		if time.Since(lastLog) > 3*time.Second {
			lastLog = time.Now()
			d.logf("%d/%d jobs final", final, len(ids))
		}
		if time.Now().After(deadline) {
			return states, recovered, fmt.Errorf("only %d of %d jobs finished within %s of the kill", final, len(ids), d.o.wait)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, time.Time{}, err
		}
	}
}

// meta is what Redis knows about a job beyond its public state.
type meta struct {
	status, worker string
	attempts       int
	starts, ends   int // events in its result stream
}

// jobMeta reads each job's hash and result stream.
func (d *drill) jobMeta(ctx context.Context, ids []string) (map[string]meta, error) {
	pipe := d.rdb.Pipeline()
	hs := make([]*redis.SliceCmd, len(ids))
	rs := make([]*redis.XMessageSliceCmd, len(ids))
	for i, id := range ids {
		hs[i] = pipe.HMGet(ctx, rkey.JobKey(id), "status", "worker", "attempts")
		rs[i] = pipe.XRange(ctx, rkey.ResultKey(id), "-", "+")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("redis: %w", err)
	}
	out := make(map[string]meta, len(ids))
	for i, id := range ids {
		v := hs[i].Val()
		str := func(j int) string {
			if j < len(v) {
				s, _ := v[j].(string)
				return s
			}
			return ""
		}
		m := meta{status: str(0), worker: str(1)}
		m.attempts, _ = strconv.Atoi(str(2))
		for _, msg := range rs[i].Val() {
			switch msg.Values["type"] {
			case "start":
				m.starts++
			case "end":
				m.ends++
			}
		}
		out[id] = m
	}
	return out, nil
}

// usageRows is what inference_requests holds after the drill.
type usageRows struct {
	rows, distinct   int
	missing, extra   []string
	byStatus         map[string]int
	completionTokens int64
	succeededTokens  int64 // completion tokens of the succeeded jobs' rows
	settle           time.Duration
}

// usage waits for the usage rows to settle (batched writes) and reads them.
func (d *drill) usage(ctx context.Context, ids []string) (usageRows, error) {
	var u usageRows
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return u, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM inference_requests").Scan(&n); err != nil {
			return u, err
		}
		if n >= len(ids) || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return u, err
		}
	}
	u.settle = time.Since(start)
	// A late duplicate would arrive within a few flush intervals.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return u, err
	}
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id), coalesce(sum(completion_tokens), 0),
		coalesce(sum(completion_tokens) FILTER (WHERE status = 'succeeded'), 0) FROM inference_requests`).
		Scan(&u.rows, &u.distinct, &u.completionTokens, &u.succeededTokens); err != nil {
		return u, err
	}
	rows, err := conn.Query(ctx, "SELECT job_id, status FROM inference_requests")
	if err != nil {
		return u, err
	}
	got := map[string]bool{}
	u.byStatus = map[string]int{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return u, err
		}
		got[id] = true
		u.byStatus[st]++
	}
	if err := rows.Err(); err != nil {
		return u, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
		if !got[id] {
			u.missing = append(u.missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			u.extra = append(u.extra, id)
		}
	}
	return u, nil
}

// report prints the summary and returns an error naming every failed check.
func (d *drill) report(ids []string, states map[string]sluice.JobState, inflight []string, m map[string]meta,
	u usageRows, dead int64, submitted, killedAt, recovered, allDone time.Time) error {
	byStatus := map[sluice.JobStatus]int{}
	for _, s := range states {
		byStatus[s.Status]++
	}
	var rerun, multiEnd, w1Finished int
	for _, id := range ids {
		if m[id].attempts > 1 {
			rerun++
		}
		if m[id].ends != 1 {
			multiEnd++
		}
		if m[id].worker == "w1" {
			w1Finished++
		}
	}
	var inflightByW2 int
	for _, id := range inflight {
		if m[id].worker == "w2" && states[id].Status == sluice.JobSucceeded {
			inflightByW2++
		}
	}
	w := d.out
	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "kill -9 drill: 2 workers, one engine (max-num-seqs 8, 50ms + 20ms/token), max_batch_size 8,")
	fmt.Fprintf(w, "worker.claim_idle %s, worker.heartbeat 1s, %d async jobs of %d tokens\n\n", d.o.claimIdle, len(ids), d.o.maxTokens)
	fmt.Fprintf(w, "  jobs submitted               %d\n", len(ids))
	fmt.Fprintf(w, "  jobs succeeded / failed      %d / %d  (cancelled %d, expired %d)\n", byStatus[sluice.JobSucceeded],
		byStatus[sluice.JobFailed], byStatus[sluice.JobCancelled], byStatus[sluice.JobExpired])
	fmt.Fprintf(w, "  w1 killed after              %.1fs (%d jobs running on w1)\n", killedAt.Sub(submitted).Seconds(), len(inflight))
	fmt.Fprintf(w, "  w1's jobs finished by w2     %d of %d\n", inflightByW2, len(inflight))
	fmt.Fprintf(w, "  jobs run more than once      %d (attempts > 1)\n", rerun)
	fmt.Fprintf(w, "  jobs with != 1 end event     %d\n", multiEnd)
	fmt.Fprintf(w, "  dead-lettered                %d\n", dead)
	if first, n := d.reclaims(); n > 0 {
		fmt.Fprintf(w, "  first reclaim by w2          %.1fs after the kill (%d reclaim batches)\n", first.Sub(killedAt).Seconds(), n)
	}
	if !recovered.IsZero() {
		fmt.Fprintf(w, "  time to recover              %.1fs (kill → last of w1's jobs final; claim_idle %s)\n",
			recovered.Sub(killedAt).Seconds(), d.o.claimIdle)
	}
	fmt.Fprintf(w, "  all jobs final after         %.1fs from submit\n", allDone.Sub(submitted).Seconds())
	fmt.Fprintf(w, "  usage rows                   %d (distinct job ids %d, duplicates %d)\n", u.rows, u.distinct, u.rows-u.distinct)
	fmt.Fprintf(w, "  usage rows by status         %v\n", u.byStatus)
	fmt.Fprintf(w, "  usage job ids missing/extra  %d / %d\n", len(u.missing), len(u.extra))
	fmt.Fprintf(w, "  completion tokens billed     %d (expected %d)\n", u.completionTokens, int64(len(ids))*int64(d.o.maxTokens))
	fmt.Fprintf(w, "  usage settled after          %.1fs\n\n", u.settle.Seconds())

	var errs []error
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(byStatus[sluice.JobSucceeded] == len(ids), "%d of %d jobs succeeded", byStatus[sluice.JobSucceeded], len(ids))
	check(inflightByW2 == len(inflight), "w2 finished %d of the %d jobs w1 was running", inflightByW2, len(inflight))
	check(multiEnd == 0, "%d jobs do not have exactly one end event", multiEnd)
	check(dead == 0, "%d jobs were dead-lettered", dead)
	check(u.rows == len(ids), "%d usage rows, want %d", u.rows, len(ids))
	check(u.rows == u.distinct, "%d duplicate usage rows", u.rows-u.distinct)
	check(len(u.missing) == 0 && len(u.extra) == 0, "usage job ids differ from the submitted ones: %d missing, %d extra",
		len(u.missing), len(u.extra))
	check(u.byStatus[string(sluice.JobSucceeded)] == len(ids), "usage rows by status %v", u.byStatus)
	return errors.Join(errs...)
}

// reclaims reads w2's log for its "reclaimed jobs of a dead worker" lines:
// the time of the first and how many there were.
func (d *drill) reclaims() (first time.Time, n int) {
	times := d.logLines("w2", "reclaimed jobs of a dead worker")
	if len(times) > 0 {
		first = times[0]
	}
	return first, len(times)
}

// logLines returns the times of a process's JSON log lines with message msg.
func (d *drill) logLines(name, msg string) []time.Time {
	b, err := os.ReadFile(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == msg {
			out = append(out, l.Time)
		}
	}
	return out
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", errors.New("go.mod not found above the working directory; run the drill from the repository")
		}
	}
}

// goBuild builds pkg into out from the repository root.
func goBuild(ctx context.Context, root, out, pkg string) error {
	gobin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	} else if r := os.Getenv("GOROOT"); r != "" {
		gobin = filepath.Join(r, "bin", "go")
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// cleanEnv is the drill's own environment without Sluice's variables, so
// nothing set in the shell leaks into the processes under test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SLUICE_"), k == "DATABASE_URL", k == "REDIS_URL":
			continue
		}
		out = append(out, kv)
	}
	return out
}
