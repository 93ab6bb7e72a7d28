package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
)

func init() {
	commands["doctor"] = command{
		usage: `doctor                               check what make run and make test need; print the fixes`,
		run:   runDoctor,
		help: `Checks Go, the PostgreSQL server binaries and a PostgreSQL server
(DATABASE_URL, else TEST_DATABASE_URL or 127.0.0.1:5432), Redis (REDIS_URL,
else TEST_REDIS_URL or 127.0.0.1:6379), Chromium, Node.js and npm (the
console's browser test), promtool and amtool, the simulator, the port
SLUICE_ADDR (127.0.0.1:8080) and the configuration (SLUICE_CONFIG). Prints
one line per check and, for each problem, the command that fixes it; exits 1
if anything is missing. It changes nothing.`,
	}
}

// check is one doctor line: what was checked, what was found, and the
// command that fixes it when it failed.
type check struct {
	name, found, fix string
	ok               bool
}

func runDoctor(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for each server")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	getenv := func(k, def string) string {
		if v := e.getenv(k); v != "" {
			return v
		}
		return def
	}
	// As root the fixes run as they are (a Debian image often has no sudo).
	sudo := "sudo "
	if os.Geteuid() == 0 {
		sudo = ""
	}
	root := sudo + "scripts/testenv.sh (installs the Debian packages, starts PostgreSQL and Redis)"
	redis.SetLogger(quietLogger{}) // the checks say what failed; no pool chatter
	var checks []check
	add := func(c check) { checks = append(checks, c) }

	// Go: make run and make test build with it.
	if p, err := exec.LookPath("go"); err != nil {
		add(check{name: "Go", found: "not on PATH", fix: "install Go 1.26 or later: https://go.dev/doc/install (then add /usr/local/go/bin to PATH)"})
	} else {
		out, _ := exec.CommandContext(ctx, p, "env", "GOVERSION").Output()
		add(check{name: "Go", ok: true, found: strings.TrimSpace(string(out)) + " (" + p + ")"})
	}

	// PostgreSQL: the binaries the embedded database runs, and a server.
	if dir, err := devstack.PostgresBinDir(); err != nil {
		add(check{name: "PostgreSQL binaries", found: "initdb not found (the embedded database of make run needs it)", fix: root})
	} else {
		add(check{name: "PostgreSQL binaries", ok: true, found: dir})
	}
	dbURL, dbFrom := e.getenv("DATABASE_URL"), "DATABASE_URL"
	if dbURL == "" {
		dbURL, dbFrom = getenv("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "TEST_DATABASE_URL (make test)"
	}
	add(pingPostgres(ctx, dbURL, dbFrom, *timeout, root))

	// Redis.
	redisURL, redisFrom := e.getenv("REDIS_URL"), "REDIS_URL"
	if redisURL == "" {
		redisURL, redisFrom = getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), "TEST_REDIS_URL (make test)"
	}
	add(pingRedis(ctx, redisURL, redisFrom, *timeout, root))

	// The console's browser test and the alert rule checks.
	chromium := getenv("CHROMIUM", "/usr/bin/chromium")
	if _, err := os.Stat(chromium); err != nil {
		add(check{name: "Chromium", found: chromium + " missing (the console's browser test needs it)", fix: sudo + "apt-get install -y chromium, or " + root})
	} else {
		add(check{name: "Chromium", ok: true, found: chromium})
	}
	for _, t := range []struct{ name, bin, pkg, why string }{
		{"Node.js", "node", "nodejs", "the console's browser test"},
		{"npm", "npm", "npm", "make test installs playwright-core with it"},
		{"promtool", "/usr/bin/promtool", "prometheus", "make check-rules"},
		{"amtool", "/usr/bin/amtool", "prometheus-alertmanager", "make check-rules"},
	} {
		if p, err := exec.LookPath(t.bin); err != nil {
			add(check{name: t.name, found: "missing (" + t.why + ")", fix: sudo + "apt-get install -y " + t.pkg + ", or " + root})
		} else {
			add(check{name: t.name, ok: true, found: p})
		}
	}
	if bin, err := devstack.SimBinary(e.getenv("SLUICE_SIM")); err != nil {
		add(check{name: "simulator", found: "bin/vllm-sim not built (make run and make test build it)", fix: "make sim"})
	} else {
		add(check{name: "simulator", ok: true, found: bin})
	}

	// The port sluice dev listens on, and the configuration.
	addr := getenv("SLUICE_ADDR", "127.0.0.1:8080")
	_, st, running := devstack.FindState(".")
	switch ln, err := net.Listen("tcp", addr); {
	case err == nil:
		ln.Close()
		add(check{name: "port " + addr, ok: true, found: "free"})
	case running && st.URL == "http://"+addr:
		add(check{name: "port " + addr, ok: true, found: fmt.Sprintf("in use by the sluice dev running here (pid %d, state %s)", st.PID, st.Dir)})
	default:
		add(check{name: "port " + addr, found: "in use: " + err.Error(),
			fix: "stop what listens there (ss -ltnp 'sport = :" + portOf(addr) + "') or pick another: SLUICE_ADDR=127.0.0.1:8081 make run"})
	}
	if cfg, err := config.Load(e.getenv); err != nil {
		add(check{name: "configuration", found: err.Error(), fix: "fix " + getenv("SLUICE_CONFIG", "the configuration") + " (sluice config prints the defaults)"})
	} else {
		from := "built-in defaults"
		if cfg.Env.ConfigPath != "" {
			from = cfg.Env.ConfigPath
		}
		add(check{name: "configuration", ok: true, found: fmt.Sprintf("%s valid, %d models", from, len(cfg.Inference.Models))})
	}
	if running {
		add(check{name: "sluice dev", ok: true, found: fmt.Sprintf("running at %s (pid %d, state %s)", st.URL, st.PID, st.Dir)})
	}

	failed := 0
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(e.stdout, "%s  %-20s %s\n", mark, c.name, c.found)
		if !c.ok && c.fix != "" {
			fmt.Fprintf(e.stdout, "      fix: %s\n", c.fix)
		}
	}
	if failed > 0 {
		return fmt.Errorf("doctor: %d problem(s); run the fix commands above", failed)
	}
	fmt.Fprintln(e.stdout, "all good: make run and make test have what they need")
	return nil
}

func pingPostgres(ctx context.Context, url, from string, timeout time.Duration, fix string) check {
	c := check{name: "PostgreSQL server"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		var v string
		if err = conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err == nil {
			c.ok, c.found = true, fmt.Sprintf("%s answers (PostgreSQL %s)", redacted(url), v)
			return c
		}
	}
	c.found = fmt.Sprintf("%s from %s: %v", redacted(url), from, shortErr(err))
	c.fix = fix + ", or set " + strings.Fields(from)[0] + " to a reachable server"
	return c
}

func pingRedis(ctx context.Context, url, from string, timeout time.Duration, fix string) check {
	c := check{name: "Redis server"}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// rconn.Open is how the platform connects: a seed address of a Redis
	// Cluster gets a cluster client, and a cluster that cannot serve every
	// slot fails here with the reason, as it would at start.
	rdb, err := rconn.Open(ctx, url, rconn.Options{})
	if err == nil {
		defer rdb.Close()
		var v string
		if v, err = rdb.Info(ctx, "server").Result(); err == nil {
			ver := "?"
			for _, l := range strings.Split(v, "\n") {
				if s, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
					ver = s
				}
			}
			kind := "Redis " + ver
			if cc, ok := rdb.(*redis.ClusterClient); ok {
				// ForEachMaster calls in parallel.
				var masters atomic.Int32
				cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { masters.Add(1); return nil }) //nolint:errcheck
				kind = fmt.Sprintf("Redis Cluster of %d masters, Redis %s", masters.Load(), ver)
			}
			c.ok, c.found = true, fmt.Sprintf("%s answers (%s)", redacted(url), kind)
			return c
		}
	}
	c.found = fmt.Sprintf("%s from %s: %v", redacted(url), from, shortErr(err))
	c.fix = fix + ", or set " + strings.Fields(from)[0] + " to a reachable server"
	return c
}

// shortErr is the last, most specific part of a dial error.
func shortErr(err error) string {
	if err == nil {
		return "no answer"
	}
	if s := err.Error(); strings.HasPrefix(s, "redis cluster:") {
		return s // names the master or the cluster's state
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 120 {
		return s[i+2:]
	}
	return s
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return filepath.Base(addr)
	}
	return p
}

// quietLogger drops go-redis's own log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
