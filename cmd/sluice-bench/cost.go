package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
)

// cost measures what one request costs each shared resource — Redis
// commands, bytes on the wire and memory left behind, PostgreSQL
// transactions and rows, CPU of Sluice, of Redis and of the engine — the
// figures docs/SCALING.md sizes deployments from. Redis is a private server
// started for the run, so its counters hold this run's traffic only.
//
// Sluice's CPU per request is the process's CPU through Sluice minus its CPU
// sending the same requests to the engine directly (the load generator's
// own share), both measured in this run.
func cost(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	dir, err := os.MkdirTemp("", "sluice-cost-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)

	redisURL, stopRedis, err := privateRedis(ctx, dir)
	if err != nil {
		return "", err
	}
	defer stopRedis()
	opt, _ := redis.ParseURL(redisURL)
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "BENCH_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, "sluice_cost_")
	if err != nil {
		return "", err
	}
	defer dropDB()
	pg, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", err
	}
	defer pg.Close(context.WithoutCancel(ctx))

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
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: %d\n      endpoints: [%s]\npricing: null\n",
		model, o.maxNumSeqs, maxModelLen, sim.URL) + scratch.Unthrottled(o.noAdmission)
	st, stopStack, err := startStack(ctx, filepath.Join(dir, "sluice"), yml, dbURL, redisURL, progress)
	if err != nil {
		return "", err
	}
	defer stopStack()

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 2 * o.concurrency}}
	body := requestBody(o.maxTokens, o.stream)
	direct := target{name: "direct", url: sim.URL + "/v1/chat/completions"}
	through := target{name: "sluice", url: "http://" + st.Addr + "/v1/chat/completions", auth: "Bearer " + st.AdminKey}
	for _, t := range []target{direct, through} {
		if r := load(ctx, client, t, body, o.warmup, o.concurrency, o.stream); r.errors > 0 {
			return "", fmt.Errorf("warm-up %s: %d failed, e.g. %s", t.name, r.errors, r.firstErr)
		}
	}
	time.Sleep(2 * time.Second) // settlement and batched writes of the warm-up end

	n := o.requests
	cpu0, mallocs0 := selfCPU(), selfMallocs()
	if r := load(ctx, client, direct, body, n, o.concurrency, o.stream); r.errors > 0 {
		return "", fmt.Errorf("direct: %d failed, e.g. %s", r.errors, r.firstErr)
	}
	clientCPU, clientMallocs := selfCPU()-cpu0, selfMallocs()-mallocs0

	before, err := snapshot(ctx, rdb, pg, sim.PID())
	if err != nil {
		return "", err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return "", err
		}
	}
	cpu1, mallocs1 := selfCPU(), selfMallocs()
	r := load(ctx, client, through, body, n, o.concurrency, o.stream)
	if r.errors > 0 {
		return "", fmt.Errorf("through Sluice: %d failed, e.g. %s", r.errors, r.firstErr)
	}
	sluiceCPU := selfCPU() - cpu1 - clientCPU
	sluiceMallocs := float64(selfMallocs()-mallocs1) - float64(clientMallocs)
	time.Sleep(2 * time.Second) // settlement, usage records and last-used writes land
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	after, err := snapshot(ctx, rdb, pg, sim.PID())
	if err != nil {
		return "", err
	}
	scripts := scriptCosts(ctx, rdb, client, through, body, min(n, 500), o.concurrency)
	trace := monitorOne(ctx, rdb, client, through, body)
	per := func(a, b float64) float64 { return (b - a) / float64(n) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "## Cost per request (%d requests, %d in flight, max_tokens %d, stream %v, %.0f req/s)\n\n", n, o.concurrency, o.maxTokens, o.stream, r.rps)
	fmt.Fprintf(&sb, "| resource | per request |\n|---|---|\n")
	fmt.Fprintf(&sb, "| Redis commands | %.1f |\n", per(before.redisCalls, after.redisCalls))
	for _, c := range topCommands(before.cmds, after.cmds, 12) {
		calls := after.cmds[c] - before.cmds[c]
		usec := 0.0
		if calls > 0 {
			usec = (after.usec[c] - before.usec[c]) / calls
		}
		fmt.Fprintf(&sb, "| · %s (µs per call) | %.2f (%.1f µs) |\n", c, per(before.cmds[c], after.cmds[c]), usec)
	}
	fmt.Fprintf(&sb, "| Redis bytes in (from clients) | %.0f |\n", per(before.netIn, after.netIn))
	fmt.Fprintf(&sb, "| Redis bytes out (to clients) | %.0f |\n", per(before.netOut, after.netOut))
	fmt.Fprintf(&sb, "| Redis memory left (used_memory, within retention) | %.0f B |\n", per(before.usedMemory, after.usedMemory))
	fmt.Fprintf(&sb, "| Redis CPU | %.3f ms |\n", 1000*per(before.redisCPU, after.redisCPU))
	fmt.Fprintf(&sb, "| PostgreSQL transactions | %.2f |\n", per(before.pgCommits, after.pgCommits))
	fmt.Fprintf(&sb, "| PostgreSQL rows inserted / updated / deleted | %.2f / %.2f / %.2f |\n",
		per(before.pgIns, after.pgIns), per(before.pgUpd, after.pgUpd), per(before.pgDel, after.pgDel))
	fmt.Fprintf(&sb, "| PostgreSQL rows read | %.1f |\n", per(before.pgRead, after.pgRead))
	fmt.Fprintf(&sb, "| Sluice CPU (submit + worker, one process; load generator's share taken out) | %.3f ms |\n", 1000*sluiceCPU.Seconds()/float64(n))
	fmt.Fprintf(&sb, "| Sluice allocations (load generator's share taken out) | %.0f |\n", sluiceMallocs/float64(n))
	fmt.Fprintf(&sb, "| engine (simulator) CPU | %.3f ms |\n", 1000*per(before.simCPU, after.simCPU))
	fmt.Fprintf(&sb, "| PostgreSQL CPU (this database's backends) | %.3f ms |\n", 1000*pgCPUDelta(before.pgCPU, after.pgCPU)/float64(n))
	fmt.Fprintf(&sb, "\n%s\n", machineInfo(ctx, rdb, dbURL))
	if scripts != "" {
		fmt.Fprintf(&sb, "\n%s", scripts)
	}
	if trace != "" {
		fmt.Fprintf(&sb, "\n<details><summary>Redis commands of one request alone (MONITOR, ms from the first; background loops included)</summary>\n\n```\n%s```\n\n</details>\n", trace)
	}
	return sb.String(), nil
}

// privateRedis starts a redis-server of this run's own on a free port.
func privateRedis(ctx context.Context, dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(ctx, "redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("redis-server: %w", err)
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() } //nolint:errcheck
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for range 50 {
		if c.Ping(ctx).Err() == nil {
			return url, stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("redis-server on port %d did not answer", port)
}

// counters is one reading of every counter cost compares.
type counters struct {
	cmds                                   map[string]float64
	usec                                   map[string]float64 // Redis µs in each command
	pgCPU                                  map[int]float64    // CPU seconds of each PostgreSQL backend of the database
	redisCalls, netIn, netOut, usedMemory  float64
	redisCPU, simCPU                       float64 // seconds
	pgCommits, pgIns, pgUpd, pgDel, pgRead float64
}

func snapshot(ctx context.Context, rdb *redis.Client, pg *pgx.Conn, simPID int) (counters, error) {
	c := counters{cmds: map[string]float64{}, usec: map[string]float64{}, pgCPU: map[int]float64{}}
	info, err := rdb.Info(ctx, "commandstats", "stats", "memory", "cpu").Result()
	if err != nil {
		return c, err
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(k, "cmdstat_"); ok {
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			f, _ := strconv.ParseFloat(calls, 64)
			c.cmds[name] = f
			c.redisCalls += f
			if _, rest, ok := strings.Cut(v, "usec="); ok {
				u, _, _ := strings.Cut(rest, ",")
				c.usec[name], _ = strconv.ParseFloat(u, 64)
			}
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "total_net_input_bytes":
			c.netIn = f
		case "total_net_output_bytes":
			c.netOut = f
		case "used_memory":
			c.usedMemory = f
		case "used_cpu_sys", "used_cpu_user":
			c.redisCPU += f
		}
	}
	// Statistics reach pg_stat_database when a backend reports them (at most
	// about a second late); the sleeps around the measured phase cover it.
	if _, err := pg.Exec(ctx, "select pg_stat_clear_snapshot()"); err != nil {
		return c, err
	}
	err = pg.QueryRow(ctx, `select xact_commit, tup_inserted, tup_updated, tup_deleted, tup_returned
		from pg_stat_database where datname = current_database()`).Scan(&c.pgCommits, &c.pgIns, &c.pgUpd, &c.pgDel, &c.pgRead)
	if err != nil {
		return c, err
	}
	c.simCPU = procCPU(simPID)
	rows, err := pg.Query(ctx, "select pid from pg_stat_activity where datname = current_database()")
	if err != nil {
		return c, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return c, err
	}
	for _, pid := range pids {
		c.pgCPU[int(pid)] = procCPU(int(pid))
	}
	return c, nil
}

// pgCPUDelta is the CPU the backends spent between two readings; a backend
// started in between counts whole, one gone in between is lost (the pool
// keeps its connections, so few are).
func pgCPUDelta(a, b map[int]float64) float64 {
	var d float64
	for pid, v := range b {
		d += v - a[pid]
	}
	return d
}

// scriptCosts sends n more requests with Redis's slow log recording every
// command, and returns a table of the scripts (EVALSHA by script and key
// shape) with calls per request and µs per call, so the Redis CPU of each
// script is seen apart (INFO commandstats lumps them all in evalsha).
func scriptCosts(ctx context.Context, rdb *redis.Client, client *http.Client, t target, body []byte, n, c int) string {
	old, err := rdb.ConfigGet(ctx, "slowlog-*").Result()
	if err != nil {
		return ""
	}
	defer func() {
		for k, v := range old {
			rdb.ConfigSet(context.WithoutCancel(ctx), k, v) //nolint:errcheck // a private server, gone at the end
		}
	}()
	if rdb.ConfigSet(ctx, "slowlog-max-len", "200000").Err() != nil || rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err() != nil {
		return ""
	}
	rdb.SlowLogReset(ctx)
	if r := load(ctx, client, t, body, n, c, false); r.errors > 0 {
		return ""
	}
	time.Sleep(2 * time.Second) // settlement and usage land
	rdb.ConfigSet(ctx, "slowlog-log-slower-than", "-1")
	logs, err := rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return ""
	}
	type agg struct {
		calls int
		us    time.Duration
	}
	by := map[string]*agg{}
	var order []string
	for _, l := range logs {
		if len(l.Args) < 4 || !strings.EqualFold(l.Args[0], "evalsha") {
			continue
		}
		k := l.Args[1][:8] + " " + l.Args[2] + " keys, first " + keyShape(l.Args[3])
		a := by[k]
		if a == nil {
			a = &agg{}
			by[k] = a
			order = append(order, k)
		}
		a.calls++
		a.us += l.Duration
	}
	slices.SortFunc(order, func(x, y string) int { return int(by[y].us - by[x].us) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "Scripts (%d more requests with the slow log on; sha, keys, first key):\n\n| script | calls per request | µs per call | µs per request |\n|---|---:|---:|---:|\n", n)
	for _, k := range order {
		a := by[k]
		fmt.Fprintf(&sb, "| `%s` | %.2f | %.1f | %.1f |\n", k, float64(a.calls)/float64(n),
			float64(a.us.Microseconds())/float64(a.calls), float64(a.us.Microseconds())/float64(n))
	}
	return sb.String()
}

// keyShape is a Redis key with its job and user ids elided: a user's hash
// tag keeps its kind letter only (the key names themselves are rkey's).
func keyShape(k string) string {
	if i := strings.IndexByte(k, '{'); i >= 0 && strings.HasPrefix(k[i+1:], "u:") {
		if j := strings.IndexByte(k[i:], '}'); j > 0 {
			k = k[:i+3] + "…" + k[i+j:]
		}
	}
	if i := strings.Index(k, ":job_"); i >= 0 {
		k = k[:i] + ":job_…"
	}
	return k
}

// monitorOne sends one request alone with MONITOR on and returns the Redis
// commands seen within a second of it, each with its time from the first,
// so a reader sees the round trips of one request (and any background
// loop's that fall in the window).
func monitorOne(ctx context.Context, rdb *redis.Client, client *http.Client, t target, body []byte) string {
	// A raw connection: MONITOR replies forever, one status line a command.
	conn, err := net.DialTimeout("tcp", rdb.Options().Addr, 5*time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return ""
	}
	lines := make(chan string, 4096)
	go func() {
		defer close(lines)
		br := bufio.NewReader(conn)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case lines <- strings.TrimSpace(strings.TrimPrefix(line, "+")):
			default:
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if _, _, err := one(ctx, client, t, body, false); err != nil {
		return ""
	}
	time.Sleep(time.Second) // settlement and usage, after the response
	conn.Close()
	var sb strings.Builder
	var t0 float64
	for line := range lines {
		ts, rest, ok := strings.Cut(line, " ")
		f, _ := strconv.ParseFloat(ts, 64)
		if !ok || f == 0 {
			continue
		}
		if t0 == 0 {
			t0 = f
		}
		if len(rest) > 160 {
			rest = rest[:160] + "…"
		}
		fmt.Fprintf(&sb, "%8.3f %s\n", 1000*(f-t0), rest)
	}
	return sb.String()
}

func selfMallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user+system CPU seconds from /proc (Linux).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: utime and stime
	// are the 14th and 15th fields overall.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	return (ut + stt) / 100 // USER_HZ is 100 on Linux
}

// topCommands are the k Redis commands called most between two readings.
func topCommands(a, b map[string]float64, k int) []string {
	var names []string
	for n := range b {
		names = append(names, n)
	}
	d := func(n string) float64 { return b[n] - a[n] }
	for i := range names { // small n: selection sort keeps it dependency-free
		for j := i + 1; j < len(names); j++ {
			if d(names[j]) > d(names[i]) {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names[:min(k, len(names))]
}
