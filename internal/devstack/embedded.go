package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"

	"github.com/sluice-ai/sluice/shared/postgres/pglocal"
)

// FreePort asks the kernel for an unused loopback port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// EmbeddedRedis starts an in-process Redis (miniredis). It is for trying
// Sluice: it keeps nothing on disk.
//
// miniredis lacks Redis 7's sharded pub/sub, which the queue scripts use to
// wake waiting requests (SPUBLISH in complete.lua and the others; see
// redisq/wait.go): on one server it is the same as PUBLISH, so SPUBLISH is
// registered as that (through the server's dispatch, which runs it inside a
// script as miniredis's own commands run there). SSUBSCRIBE stays missing:
// waits beyond redisq's WaitDirect then wake on their safety poll, which is
// fine for one person trying the stack.
func EmbeddedRedis() (url string, stop func(), err error) {
	s := miniredis.NewMiniRedis()
	if err := s.StartAddr("127.0.0.1:0"); err != nil {
		return "", nil, err
	}
	srv := s.Server() // set by the start; nothing has connected yet
	if err := srv.Register("SPUBLISH", func(c *server.Peer, _ string, args []string) {
		srv.Dispatch(c, append([]string{"PUBLISH"}, args...))
	}); err != nil {
		s.Close()
		return "", nil, err
	}
	return "redis://" + s.Addr(), s.Close, nil
}

// EmbeddedPostgres runs a private PostgreSQL cluster under dir (created on
// first use) on a free loopback port and returns its URL. PostgreSQL refuses
// to run as root, so as root the cluster runs as the "postgres" user (or
// "nobody").
func EmbeddedPostgres(ctx context.Context, dir string) (url string, stop func(), err error) {
	bin, err := pglocal.BinDir()
	if err != nil {
		return "", nil, err
	}
	dir, _ = filepath.Abs(dir)
	data := filepath.Join(dir, "data")
	cred, err := pglocal.Credential()
	if err != nil {
		return "", nil, err
	}
	run := func(name string, args ...string) error {
		// Not tied to ctx: the stop at shutdown runs after ctx has ended.
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	pglocal.Hand(dir, cred)
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"); err != nil {
			return "", nil, err
		}
	}
	// A cluster left running by a killed `sluice dev` is stopped first.
	run("pg_ctl", "-D", data, "-m", "immediate", "stop") //nolint:errcheck
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	opts := fmt.Sprintf("-p %d -k %s -h 127.0.0.1 -c fsync=on", port, dir)
	if err := run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "postgres.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		return "", nil, err
	}
	stop = func() { run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop") } //nolint:errcheck
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/", port)
	if err := run("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres", "-tAc",
		"SELECT 1 FROM pg_database WHERE datname='sluice'"); err != nil {
		stop()
		return "", nil, err
	}
	run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "sluice") //nolint:errcheck // exists already
	return base + "sluice?sslmode=disable", stop, nil
}

// LoadOrCreateSecret returns the hex secret stored in path, creating it
// (32 random bytes, mode 0600) on first use.
func LoadOrCreateSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	s := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// Sim is a running llm-d-inference-sim.
type Sim struct {
	URL    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited and been waited for
}

// Stop kills the simulator.
func (s *Sim) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill() //nolint:errcheck
		<-s.exited
	}
}

// SimBinary finds the simulator: $SLUICE_SIM, bin/vllm-sim above the
// working directory, or vllm-sim on PATH.
func SimBinary(override string) (string, error) {
	if override != "" {
		return override, nil
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			p := filepath.Join(d, "bin", "vllm-sim")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	if p, err := exec.LookPath("vllm-sim"); err == nil {
		return p, nil
	}
	return "", errors.New("the vLLM simulator is not built; run: make sim")
}

// StartSim starts a simulator serving model on a free port, with extra
// flags, and waits until it is healthy. A simulator that exits first (the
// free port was taken by another process before it could bind) is started
// again on another port, up to three times.
func StartSim(ctx context.Context, bin, model string, maxModelLen, maxSeqs int, logFile string, extra ...string) (*Sim, error) {
	var err error
	for range 3 {
		var s *Sim
		if s, err = startSim(ctx, bin, model, maxModelLen, maxSeqs, logFile, extra...); err == nil || !errors.Is(err, errSimExited) {
			return s, err
		}
	}
	return nil, err
}

// errSimExited: the simulator ended before it was healthy.
var errSimExited = errors.New("exited before it was healthy")

func startSim(ctx context.Context, bin, model string, maxModelLen, maxSeqs int, logFile string, extra ...string) (*Sim, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--model", model, "--force-dummy-tokenizer",
		"--max-model-len", strconv.Itoa(maxModelLen), "--max-num-seqs", strconv.Itoa(maxSeqs)}, extra...)
	cmd := exec.Command(bin, args...)
	if logFile != "" {
		if f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive us
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Sim{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, exited: make(chan struct{})}
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-s.exited:
			return nil, fmt.Errorf("simulator for %s on port %d %w (%v)", model, port, errSimExited, waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.Stop()
	return nil, fmt.Errorf("simulator for %s did not become healthy", model)
}

// PostgresBinDir is the folder of the installed PostgreSQL server binaries
// (initdb, pg_ctl) the embedded database runs; the error says how to
// install them.
func PostgresBinDir() (string, error) { return pglocal.BinDir() }

// PID is the simulator's process id (for measuring its CPU).
func (s *Sim) PID() int {
	if s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
