package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// The failover drill (`sluice-drill failover`): a private Redis Cluster of 3
// masters and 3 replicas (cluster-node-timeout 2 s), the functions, two
// workers and one simulator on it; 500 async jobs are submitted while they
// run, and once half are accepted the master serving the model's job stream
// (so its queue, its job records and their completions) is killed with
// SIGKILL. Its replica is promoted; the platform must keep serving without a
// restart. Afterwards: how many jobs were accepted (202), succeeded, lost
// (accepted, then unknown or never final), billed twice (more than one
// usage or ledger row), and the recovery time (from the kill to the first
// job that succeeded after it). With -wait-replicas 1 (WAIT on) nothing may
// be lost or billed twice; with -wait-replicas 0 the drill only reports,
// since asynchronous replication promises nothing there.

// failoverOptions are the failover drill's flags.
type failoverOptions struct {
	jobs         int
	maxTokens    int
	waitReplicas int
	waitTimeout  time.Duration
	basePort     int
	stall        time.Duration
	sim          string
	timeout      time.Duration
	keep         bool
}

func runFailover(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-drill failover", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o failoverOptions
	fs.IntVar(&o.jobs, "jobs", 500, "async jobs to submit")
	fs.IntVar(&o.maxTokens, "max-tokens", 10, "tokens each job generates (about 20 ms each)")
	fs.IntVar(&o.waitReplicas, "wait-replicas", 1, "redis.wait_replicas (0: WAIT off; the drill then only reports)")
	fs.DurationVar(&o.waitTimeout, "wait-timeout", 100*time.Millisecond, "redis.wait_timeout")
	fs.DurationVar(&o.stall, "replica-stall", 0, "stop (SIGSTOP) the victim's replica and cut its link this long before the kill, resumed after it: replication lag, under which acknowledged writes are lost unless WAIT outlasts it")
	fs.IntVar(&o.basePort, "base-port", 7400, "the cluster's six nodes listen on base-port..base-port+5")
	fs.StringVar(&o.sim, "sim", os.Getenv("SLUICE_SIM"), "simulator binary (default $SLUICE_SIM or bin/vllm-sim)")
	fs.DurationVar(&o.timeout, "timeout", 6*time.Minute, "bound on the whole drill")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (binaries, logs, node files)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.jobs < 20 || o.maxTokens < 1 || o.waitReplicas < 0 || o.waitReplicas > 1 || o.basePort < 1024 || o.basePort > 65000 {
		fmt.Fprintln(stderr, "sluice-drill failover: need -jobs >= 20, -max-tokens > 0, -wait-replicas 0 or 1 (one replica each), -base-port 1024..65000")
		return 2
	}
	f := &failover{o: o, drill: &drill{out: stdout, errw: stderr,
		o: options{mode: "failover", jobs: o.jobs, maxTokens: o.maxTokens, sim: o.sim, claimIdle: 3 * time.Second}}}
	return verdict(ctx, o.timeout, f.run, "sluice-drill failover", stdout, stderr)
}

type failover struct {
	*drill
	o       failoverOptions
	nodes   map[int]*proc // by port
	idem404 atomic.Int64  // retries answered 404 (see submitOne)
}

func (f *failover) run(ctx context.Context) (err error) {
	cleanup, err := f.setup(ctx, "sluice-failover")
	if err != nil {
		return err
	}
	defer func() { cleanup(err != nil || f.o.keep) }()
	defer f.stopAll() // first of the cleanups: the processes go before their database

	// 1. The cluster: 3 masters, 3 replicas.
	addrs, err := f.startCluster(ctx)
	if err != nil {
		return err
	}
	// Every node is named, so the clients find the cluster whichever dies.
	redisURL := "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	rdb, err := rconn.Open(ctx, redisURL, rconn.Options{})
	if err != nil {
		return err
	}
	defer rdb.Close()
	cc := rdb.(*redis.ClusterClient)
	f.rdb = cc

	// 2. The engine, the configuration, the functions and two workers.
	sims, err := f.startSims(ctx)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(f.dir, "sluice.yaml")
	yml := fmt.Sprintf(`inference:
  models:
    - name: %s
      max_batch_size: 8
      max_model_len: 2048
      endpoints: [%s]
pricing: null # the built-in prices name the built-in models
worker:
  claim_idle: 3s
  heartbeat: 1s
  listen: "off"
redis:
  wait_replicas: %d
  wait_timeout: %s
`, model, strings.Join(simURLs(sims), ", "), f.o.waitReplicas, f.o.waitTimeout) + scratch.Unthrottled(false)
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		return err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	f.base = "http://" + addr
	f.env = append(cleanEnv(), "DATABASE_URL="+f.dbURL, "REDIS_URL="+redisURL, "SLUICE_KEY_PEPPER="+scratch.RandHex(32),
		"SLUICE_WEBHOOK_SECRET="+scratch.RandHex(32), "SLUICE_ADDR="+addr, "SLUICE_CONFIG="+cfgPath)
	f.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	state := filepath.Join(f.dir, "state")
	fn, err := f.start("sluice", filepath.Join(f.dir, "sluice"), nil, "dev", "--no-worker", "--dir", state)
	if err != nil {
		return err
	}
	if err := f.waitReady(ctx, fn); err != nil {
		return err
	}
	k, err := os.ReadFile(filepath.Join(state, "admin.key"))
	if err != nil {
		return fmt.Errorf("admin key: %w", err)
	}
	f.key = strings.TrimSpace(string(k))
	var ws []*proc
	for _, name := range []string{"w1", "w2"} {
		w, err := f.start(name, filepath.Join(f.dir, "gpuworker"), []string{"SLUICE_WORKER_NAME=" + name})
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	stream := rkey.StreamKey(model, 0) // the admin is enterprise: priority 0
	if err := f.waitConsumers(ctx, stream, ws); err != nil {
		return err
	}
	victim, err := f.masterOf(ctx, cc, stream)
	if err != nil {
		return err
	}
	f.logf("the model's job stream is on master %d: it is the one killed", victim)

	// 3. Submit while the workers run; kill the master half-way.
	var (
		mu       sync.Mutex
		ids      []string
		refusals int
		killedAt time.Time
		firstOK  time.Time // first 202 after the kill
	)
	submitted := time.Now()
	subErr := make(chan error, 1)
	go func() {
		for i := range f.o.jobs {
			id, n, err := f.submitOne(ctx, i)
			mu.Lock()
			refusals += n
			if id != "" {
				ids = append(ids, id)
				if !killedAt.IsZero() && firstOK.IsZero() {
					firstOK = time.Now()
				}
			}
			mu.Unlock()
			if err != nil {
				subErr <- err
				return
			}
		}
		subErr <- nil
	}()
	for {
		mu.Lock()
		n := len(ids)
		mu.Unlock()
		if n >= f.o.jobs/2 {
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	mu.Lock()
	before := append([]string(nil), ids...)
	mu.Unlock()
	var replica *proc
	if f.o.stall > 0 {
		if replica, err = f.replicaOf(ctx, victim); err != nil {
			return err
		}
		if err := syscall.Kill(replica.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			return err
		}
		// A stopped replica still receives into its socket buffer, and would
		// catch up on SIGCONT: cut its link too, so what the master writes
		// meanwhile reaches no replica (the stopped one cannot reconnect).
		mc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(victim)})
		err := mc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err()
		mc.Close()
		if err != nil {
			return fmt.Errorf("cut the replica's link: %w", err)
		}
		f.logf("%s stopped (SIGSTOP) and its link cut for %s before the kill: the master's writes meanwhile are not replicated", replica.name, f.o.stall)
		if err := sleep(ctx, f.o.stall); err != nil {
			return err
		}
		mu.Lock()
		before = append([]string(nil), ids...)
		mu.Unlock()
	}
	pre := f.redisStatuses(ctx, cc, before)
	if err := syscall.Kill(f.nodes[victim].cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	if replica != nil {
		if err := syscall.Kill(replica.cmd.Process.Pid, syscall.SIGCONT); err != nil {
			return err
		}
	}
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	<-f.nodes[victim].done
	f.logf("master %d killed (SIGKILL) with %d jobs accepted", victim, len(before))

	// 4. Recovery: the first job, not final at the kill, seen succeeded.
	var recovered time.Time
	for recovered.IsZero() && time.Since(killedAt) < time.Minute {
		for id, st := range f.redisStatuses(ctx, cc, before) {
			if st == string(sluice.JobSucceeded) && !sluice.JobStatus(pre[id]).Terminal() {
				recovered = time.Now()
				break
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if recovered.IsZero() {
		return errors.New("no job succeeded within a minute of the kill")
	}
	f.logf("first job succeeded %.2fs after the kill", recovered.Sub(killedAt).Seconds())
	// As a supervisor would, start the killed node again: it rejoins as the
	// replica of its promoted one, so the master again has a replica to
	// WAIT for (until then every durable write of its slots waits the whole
	// wait_timeout, and is counted as timed out).
	rejoined, err := f.rejoin(ctx, victim)
	if err != nil {
		return err
	}
	f.logf("killed node restarted; replica again (link up) %.2fs after the kill", rejoined.Sub(killedAt).Seconds())
	if err := <-subErr; err != nil {
		return err
	}
	mu.Lock()
	accepted := append([]string(nil), ids...)
	mu.Unlock()
	f.logf("submitted: %d accepted, %d answers 503 or no answer (retried with the same Idempotency-Key)", len(accepted), refusals)

	// 5. Every accepted job final, or lost.
	states, lost, err := f.waitFinal(ctx, accepted, 2*time.Minute)
	if err != nil {
		return err
	}
	allDone := time.Now()
	for _, p := range append([]*proc{fn}, ws...) {
		if p.exited() {
			return fmt.Errorf("%s died during the drill; see %s", p.name, f.dir)
		}
	}
	rows, err := f.usage(ctx, accepted)
	if err != nil {
		return err
	}
	meta, err := f.jobMeta(ctx, accepted)
	if err != nil {
		return err
	}
	return f.report(ctx, accepted, states, lost, rows, meta, refusals, submitted, killedAt, firstOK, recovered, allDone)
}

// startCluster starts six cluster-enabled redis-servers, makes them a
// cluster of 3 masters with a replica each, and returns their addresses.
func (f *failover) startCluster(ctx context.Context) ([]string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("the failover drill needs redis-server on PATH: %w", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("the failover drill needs redis-cli on PATH: %w", err)
	}
	f.nodes = map[int]*proc{}
	var addrs []string
	for i := range 6 {
		port := f.o.basePort + i
		dir := filepath.Join(f.dir, "redis-"+strconv.Itoa(port))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		p, err := f.start("redis-"+strconv.Itoa(port), bin, nil, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"), "--cluster-node-timeout", "2000",
			"--appendonly", "no", "--save", "", "--dir", dir, "--repl-diskless-sync-delay", "0")
		if err != nil {
			return nil, err
		}
		if err := f.waitTCP(ctx, port); err != nil {
			return nil, err
		}
		if p.exited() {
			return nil, fmt.Errorf("redis-server on %d exited (port in use?); see %s", port, f.dir)
		}
		f.nodes[port] = p
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	out, err := exec.CommandContext(ctx, cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	// Ready: every node sees the cluster ok and each replica is linked.
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			ci, _ := c.ClusterInfo(ctx).Result()
			ri, _ := c.Info(ctx, "replication").Result()
			if strings.Contains(ci, "cluster_state:ok") && (strings.Contains(ri, "role:master") || strings.Contains(ri, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				return nil, fmt.Errorf("cluster node %s not ready after 30s", a)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				c.Close()
				return nil, err
			}
		}
		c.Close()
	}
	f.logf("cluster of 3 masters + 3 replicas up on %d..%d", f.o.basePort, f.o.basePort+5)
	return addrs, nil
}

// rejoin starts the killed node on port again with its command line (and
// nodes.conf) and waits until it replicates its promoted former replica.
func (f *failover) rejoin(ctx context.Context, port int) (time.Time, error) {
	old := f.nodes[port]
	p, err := f.start(old.name+"-again", old.cmd.Path, nil, old.cmd.Args[1:]...)
	if err != nil {
		return time.Time{}, err
	}
	f.nodes[port] = p
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer c.Close()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if info, _ := c.Info(ctx, "replication").Result(); strings.Contains(info, "master_link_status:up") {
			return time.Now(), nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
	return time.Time{}, fmt.Errorf("restarted node %d did not become a linked replica within 30s", port)
}

// replicaOf returns the process of the replica of the master on port.
func (f *failover) replicaOf(ctx context.Context, port int) (*proc, error) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "slave0:") {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(line[len("slave0:"):]), ",") {
			if v, ok := strings.CutPrefix(kv, "port="); ok {
				p, _ := strconv.Atoi(v)
				if r, ok := f.nodes[p]; ok {
					return r, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("master %d has no replica: %s", port, info)
}

// masterOf returns the port of the master serving key.
func (f *failover) masterOf(ctx context.Context, cc *redis.ClusterClient, key string) (int, error) {
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return 0, err
	}
	_, p, _ := strings.Cut(m.Options().Addr, ":")
	return strconv.Atoi(p)
}

// submitOne posts job i until it is accepted, retrying a 503 or a lost
// answer with the same Idempotency-Key (as a client should), so a retry of
// a job that was in fact enqueued is not a second job. It returns the id
// and how many answers were not a 202.
func (f *failover) submitOne(ctx context.Context, i int) (string, int, error) {
	body := fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"failover job %d"}],"max_tokens":%d,"ignore_eos":true}}`,
		model, i, f.o.maxTokens)
	idem := fmt.Sprintf("failover-%d-%s", i, scratch.RandHex(4))
	refused := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.base+"/v1/jobs", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		resp, err := f.hc.Do(req)
		if err == nil {
			var js sluice.JobState
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if (resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK) && jsonID(b, &js) != "" {
				return js.ID, refused, nil
			}
			if resp.StatusCode == http.StatusNotFound && refused > 0 {
				// The retry's Idempotency-Key names a job the failover lost
				// (its first try's enqueue was refused with 503, but the key
				// still maps to it): the platform answers 404 to a POST. A
				// client can only start again under a new key; counted.
				f.idem404.Add(1)
				idem = fmt.Sprintf("failover-%d-%s", i, scratch.RandHex(4))
				refused++
				continue
			}
			if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusConflict {
				return "", refused, fmt.Errorf("submit job %d: %d %s", i, resp.StatusCode, strings.TrimSpace(string(b)))
			}
		}
		refused++
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return "", refused, err
		}
	}
	return "", refused, fmt.Errorf("submit job %d: not accepted within a minute", i)
}

// redisStatuses reads the jobs' statuses from their hashes (nothing for
// those it cannot read now).
func (f *failover) redisStatuses(ctx context.Context, cc *redis.ClusterClient, ids []string) map[string]string {
	pipe := cc.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, rkey.JobKey(id), "status")
	}
	pipe.Exec(ctx) //nolint:errcheck // per-command results below
	out := make(map[string]string, len(ids))
	for i, id := range ids {
		if s, err := cmds[i].Result(); err == nil {
			out[id] = s
		}
	}
	return out
}

// waitFinal polls the accepted jobs through the API until each is final or
// unknown (404: lost), or until `bound`; those still not final then count as
// lost too.
func (f *failover) waitFinal(ctx context.Context, ids []string, bound time.Duration) (map[string]sluice.JobState, []string, error) {
	deadline := time.Now().Add(bound)
	lastLog := time.Now()
	for {
		states := map[string]sluice.JobState{}
		var lost, open []string
		for _, id := range ids {
			var js sluice.JobState
			st, err := f.call(ctx, http.MethodGet, "/v1/jobs/"+id, nil, &js)
			switch {
			case st == http.StatusNotFound:
				lost = append(lost, id)
			case err != nil:
				open = append(open, id) // the platform may still be recovering
			case js.Status.Terminal():
				states[id] = js
			default:
				open = append(open, id)
			}
		}
		if len(open) == 0 {
			return states, lost, nil
		}
		if time.Now().After(deadline) {
			f.logf("%d jobs not final after %s: counted as lost", len(open), bound)
			return states, append(lost, open...), nil
		}
		if time.Since(lastLog) > 3*time.Second {
			lastLog = time.Now()
			f.logf("%d/%d jobs final, %d unknown", len(states), len(ids), len(lost))
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return nil, nil, err
		}
	}
}

// report prints the figures and fails, with WAIT on, if a job was lost or
// billed twice.
func (f *failover) report(ctx context.Context, ids []string, states map[string]sluice.JobState, lost []string, u usageRows, m map[string]meta,
	refusals int, submitted, killedAt, firstOK, recovered, allDone time.Time) error {
	conn, err := pgx.Connect(ctx, f.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	one := func(q string) int {
		var n int
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			f.logf("query %q: %v", q, err)
			return -1
		}
		return n
	}
	ledgerTwice := one(`SELECT count(*) FROM (SELECT job_id FROM credit_ledger WHERE job_id IS NOT NULL GROUP BY job_id HAVING count(*) > 1) t`)
	unsettled := one(`SELECT count(*) FROM inference_requests r LEFT JOIN credit_ledger l ON l.job_id = r.job_id WHERE l.job_id IS NULL`)
	ledgerRows := one(`SELECT count(*) FROM credit_ledger WHERE kind = 'usage'`)
	byStatus := map[sluice.JobStatus]int{}
	for _, s := range states {
		byStatus[s.Status]++
	}
	var rerun, multiEnd int
	for _, id := range ids {
		if m[id].attempts > 1 {
			rerun++
		}
		if m[id].ends > 1 {
			multiEnd++
		}
	}
	twice := (u.rows - u.distinct) + ledgerTwice
	wait := "off"
	if f.o.waitReplicas > 0 {
		wait = fmt.Sprintf("on (wait_replicas %d, wait_timeout %s)", f.o.waitReplicas, f.o.waitTimeout)
	}
	since := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%.2fs", t.Sub(killedAt).Seconds())
	}
	w := f.out
	fmt.Fprintf(w, "\nfailover drill: Redis Cluster 3 masters + 3 replicas (cluster-node-timeout 2s), WAIT %s;\n", wait)
	fmt.Fprintf(w, "2 workers, 1 engine; %d async jobs of %d tokens; the master of the model's job stream killed (SIGKILL) at %.1fs\n",
		f.o.jobs, f.o.maxTokens, killedAt.Sub(submitted).Seconds())
	if f.o.stall > 0 {
		fmt.Fprintf(w, "its replica stopped (SIGSTOP, link cut) for %s before the kill and resumed after it (replication lag)\n", f.o.stall)
	}
	fmt.Fprintf(w, "sluice_redis_wait_timeouts_total of the functions process: %s\n\n", f.waitTimeouts(ctx))
	fmt.Fprintf(w, "  accepted (202)                        %d of %d\n", len(ids), f.o.jobs)
	fmt.Fprintf(w, "  503 / no answer, retried (same key)   %d\n", refusals)
	fmt.Fprintf(w, "  idempotent retries answered 404      %d (restarted under a new key)\n", f.idem404.Load())
	fmt.Fprintf(w, "  succeeded / failed                    %d / %d  (cancelled %d, expired %d)\n", byStatus[sluice.JobSucceeded],
		byStatus[sluice.JobFailed], byStatus[sluice.JobCancelled], byStatus[sluice.JobExpired])
	fmt.Fprintf(w, "  lost (accepted, then unknown/stuck)   %d\n", len(lost))
	fmt.Fprintf(w, "  billed twice                          %d (duplicate usage rows %d, duplicate ledger rows %d)\n", twice, u.rows-u.distinct, ledgerTwice)
	fmt.Fprintf(w, "  usage rows / ledger usage rows        %d / %d (usage rows without a ledger row: %d)\n", u.rows, ledgerRows, unsettled)
	fmt.Fprintf(w, "  jobs run more than once / >1 end      %d / %d\n", rerun, multiEnd)
	fmt.Fprintf(w, "  first 202 after the kill              %s\n", since(firstOK))
	fmt.Fprintf(w, "  recovery (kill to first success)      %s\n", since(recovered))
	fmt.Fprintf(w, "  all jobs final after                  %.1fs from the first submit\n\n", allDone.Sub(submitted).Seconds())
	if len(lost) > 0 {
		fmt.Fprintf(w, "  lost jobs: %v\n\n", lost[:min(len(lost), 10)])
	}
	if f.o.waitReplicas == 0 {
		return nil // WAIT off promises nothing at a failover: report only
	}
	var errs []error
	if len(lost) > 0 {
		errs = append(errs, fmt.Errorf("%d accepted jobs lost", len(lost)))
	}
	if twice != 0 {
		errs = append(errs, fmt.Errorf("%d jobs billed twice", twice))
	}
	if unsettled != 0 {
		errs = append(errs, fmt.Errorf("%d usage rows without their ledger row", unsettled))
	}
	if byStatus[sluice.JobSucceeded] != len(ids)-len(lost) {
		errs = append(errs, fmt.Errorf("%d of %d accepted jobs succeeded", byStatus[sluice.JobSucceeded], len(ids)))
	}
	return errors.Join(errs...)
}

// jsonID decodes a job answer into js and returns its id ("" if none).
func jsonID(b []byte, js *sluice.JobState) string {
	if json.Unmarshal(b, js) != nil {
		return ""
	}
	return js.ID
}

// waitTimeouts reads sluice_redis_wait_timeouts_total from the functions'
// /metrics (the workers run without a metrics port here).
func (f *failover) waitTimeouts(ctx context.Context) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.base+"/metrics", nil)
	resp, err := f.hc.Do(req)
	if err != nil {
		return "unread: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "sluice_redis_wait_timeouts_total "); ok {
			return v
		}
	}
	return fmt.Sprintf("not exported (/metrics answered %d)", resp.StatusCode)
}
