package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/shrinkwrap"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// sluiceBinary builds cmd/sluice once per test run (the gateway test and
// the CLI tests run it as a user would) and returns its path.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "sluice-cli-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "sluice")
		// Cached: the package's second run (on the Redis Cluster) and a
		// second make test copy the binary instead of linking it again.
		binErr = shrinkwrap.BuildCached(context.Background(), root, binPath, "./cmd/sluice", shrinkwrap.BuildFlags...)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// cli runs Main in-process with env and returns the exit code, stdout and stderr.
func cli(env map[string]string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// TestCLIHelpUnknownAndVersion: every command's --help prints its help and
// exits 0 without doing anything (migrate --help leaves the database
// untouched); unknown commands, verbs, flags and stray arguments are errors
// (exit 2) that say so; `sluice version` prints the build.
func TestCLIHelpUnknownAndVersion(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": testenv.RedisURL(), "SLUICE_KEY_PEPPER": testenv.Pepper}
	for name := range commands {
		for _, help := range []string{"--help", "-h"} {
			args := []string{name, help}
			if name == "key" || name == "credits" || name == "limits" || name == "model" {
				args = []string{name, "x", help} // a verb before the flag too
			}
			code, out, errOut := cli(env, args...)
			if code != 0 || !strings.HasPrefix(out, "usage: sluice "+name) || errOut != "" {
				t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 0 and the help", strings.Join(args, " "), code, out, errOut)
			}
		}
	}
	if code, out, _ := cli(env, "migrate", "--help"); code != 0 || !strings.Contains(out, "migrations") {
		t.Fatalf("migrate --help: %d %q", code, out)
	}
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("migrate --help created %d tables", tables)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, `unknown command "bogus"`},
		{[]string{"key", "delete"}, `unknown subcommand "delete"`},
		{[]string{"key"}, "want create, list, revoke or rotate"},
		{[]string{"key", "list"}, "--email is required"},
		{[]string{"key", "revoke", "--id", "sk-123"}, "--id must be a key id"},
		{[]string{"dev", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"migrate", "now"}, `unexpected argument "now"`},
		{[]string{"key", "create", "--email", "a@b.c", "extra"}, `unexpected argument "extra"`},
		{[]string{"backup", "--bucket", "x"}, "flag provided but not defined"},
		{[]string{"limits", "reset", "--email", "a@b.c"}, "usage: sluice limits"},
		// Flags that would be ignored are errors.
		{[]string{"credits", "balance", "--email", "a@b.c", "--amount", "5"}, "flag provided but not defined: -amount"},
		{[]string{"model", "keygen", "--key", "k", "--pub", "p", "--name", "x"}, "model keygen does not take --name"},
		{[]string{"dev", "--no-worker", "--sim-args", "--inter-token-latency 5ms"}, "--sim-args has no effect with --no-worker"},
	} {
		code, out, errOut := cli(env, c.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("sluice %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
	if code, out, _ := cli(env, "help"); code != 0 || !strings.Contains(out, "sluice key create|list|revoke|rotate") || !strings.Contains(out, "sluice doctor") {
		t.Errorf("help: %d %q", code, out)
	}
	if code, out, _ := cli(env, "version"); code != 0 || !regexp.MustCompile(`^sluice \S+ go1\.\d+`).MatchString(out) {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestKeyCommands: key create / list / revoke / rotate against a running
// stack, each checked through the API with the official SDK's wire format;
// --tier on an existing user is applied and said.
func TestKeyCommands(t *testing.T) {
	t.Parallel()
	s := startStack(t, "")
	env := map[string]string{"DATABASE_URL": s.dbURL, "REDIS_URL": testenv.RedisURL(), "SLUICE_KEY_PEPPER": testenv.Pepper}
	email := testenv.Name("cli") + "@example.com"
	run := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cli(env, args...)
		if code != 0 {
			t.Fatalf("sluice %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out, errOut
	}
	status := func(key string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", s.base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	k1, note := run("key", "create", "--email", email, "--name", "first")
	k1 = strings.TrimSpace(k1)
	if !strings.Contains(note, "created user "+email+" (tier free") || status(k1) != 200 {
		t.Fatalf("key create: %q %q, status %d", k1, note, status(k1))
	}
	// An existing user with --tier: applied, and said.
	k2, note := run("key", "create", "--email", email, "--tier", "pro", "--name", "second")
	k2 = strings.TrimSpace(k2)
	if !strings.Contains(note, "tier free → pro") || status(k2) != 200 {
		t.Fatalf("key create --tier pro on an existing user: %q, status %d", note, status(k2))
	}
	if _, note := run("key", "create", "--email", email, "--name", "third"); !strings.Contains(note, "existing user "+email+" (tier pro") {
		t.Errorf("existing user without flags: %q", note)
	}

	list, _ := run("key", "list", "--email", email)
	ids := map[string]string{} // name → id
	for _, l := range strings.Split(strings.TrimSpace(list), "\n")[1:] {
		f := strings.Fields(l)
		ids[f[2]] = f[0]
		if !strings.HasSuffix(l, "live") {
			t.Errorf("new key not live: %q", l)
		}
	}
	if len(ids) != 3 || !strings.HasPrefix(list, "ID") {
		t.Fatalf("key list:\n%s", list)
	}

	out, _ := run("key", "revoke", "--id", ids["first"])
	if !strings.Contains(out, "revoked key "+ids["first"]) {
		t.Errorf("revoke printed %q", out)
	}
	if st := status(k1); st != 401 {
		t.Errorf("revoked key: status %d, want 401", st)
	}
	if code, _, errOut := cli(env, "key", "revoke", "--id", ids["first"]); code != 1 || !strings.Contains(errOut, "no live key") {
		t.Errorf("revoking twice: %d %q", code, errOut)
	}

	k3, note := run("key", "rotate", "--email", email, "--id", ids["second"], "--overlap", "0s")
	k3 = strings.TrimSpace(k3)
	if !strings.Contains(note, "rotated ") || status(k3) != 200 {
		t.Fatalf("rotate: %q, new key status %d", note, status(k3))
	}
	if st := status(k2); st != 401 {
		t.Errorf("rotated key with no overlap: status %d, want 401", st)
	}
	list, _ = run("key", "list", "--email", email)
	if !strings.Contains(list, "revoked ") || !strings.Contains(list, "expired ") || strings.Count(list, "\n") != 5 {
		t.Errorf("key list after revoke and rotate:\n%s", list)
	}
}

// TestCLIFindsStackAndLeavesNothing runs the built binary as a user would:
// from a subfolder of a checkout whose `sluice dev` keeps its own pepper,
// key create finds the stack (.sluice/dev.json above) and its key works;
// from outside any checkout, and with a DATABASE_URL but no pepper, it
// fails, saying why, and leaves no file behind.
func TestCLIFindsStackAndLeavesNothing(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	root := t.TempDir()
	for _, d := range []string{".git", "a/b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := startStackEnv(t, map[string]string{"SLUICE_KEY_PEPPER": "", "SLUICE_TEST_STATE_DIR": filepath.Join(root, ".sluice")}, "")
	if _, err := os.Stat(filepath.Join(root, ".sluice", "pepper")); err != nil {
		t.Fatalf("the stack keeps its own pepper: %v", err)
	}
	run := func(dir string, env []string, args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errb.String()
	}
	email := testenv.Name("sub") + "@example.com"
	code, out, errOut := run(filepath.Join(root, "a", "b"), nil, "key", "create", "--email", email)
	if code != 0 {
		t.Fatalf("key create from a subfolder: exit %d: %s", code, errOut)
	}
	req, _ := http.NewRequest("GET", s.base+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(out))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the key made from a subfolder: status %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(root, "a", "b", ".sluice")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key create left %s/a/b/.sluice behind (%v)", root, err)
	}

	outside := t.TempDir()
	for _, c := range []struct {
		env  []string
		want string
	}{
		{nil, "no `sluice dev` is running in this checkout"},
		{[]string{"DATABASE_URL=" + s.dbURL, "REDIS_URL=" + testenv.RedisURL()}, "SLUICE_KEY_PEPPER is not set"},
	} {
		code, out, errOut := run(outside, c.env, "key", "create", "--email", email)
		if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("key create outside the checkout (%v): exit %d, stdout %q, stderr %q; want 1 and %q", c.env, code, out, errOut, c.want)
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("a failed key create left %v behind", entries)
		}
	}
}

// TestDevLockAdminKeyAndInterrupt runs `sluice dev` as a user would: a
// second one on the same state folder refuses, changes none of the first's
// files, and the first keeps serving; Ctrl-C (SIGINT) stops it with exit 0;
// the next start keeps the admin key; a lost admin.key is replaced and the
// replaced key revoked.
func TestDevLockAdminKeyAndInterrupt(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	sim := testenv.Sim(t)
	dir := t.TempDir()
	state := filepath.Join(dir, ".sluice")
	cfg := filepath.Join(dir, "sluice.yaml")
	model := testenv.Name("lock")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: 4\n      max_model_len: 256\npricing: {}\n", model)), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DATABASE_URL=" + pgtest.NewURL(t), "REDIS_URL=" + testenv.RedisURL(),
		"SLUICE_CONFIG=" + cfg, "SLUICE_SIM=" + sim, fmt.Sprintf("SLUICE_ADDR=127.0.0.1:%d", port)}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	type dev struct {
		cmd  *exec.Cmd
		logs *bytes.Buffer
	}
	start := func() dev {
		t.Helper()
		cmd := exec.Command(bin, "dev", "--dir", state)
		cmd.Dir, cmd.Env = dir, env
		logs := &bytes.Buffer{}
		cmd.Stderr = logs
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck
		up := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			found := false
			for sc.Scan() {
				if !found && strings.Contains(sc.Text(), "Sluice is running at") {
					found = true
					up <- true
				}
			}
			if !found {
				up <- false
			}
		}()
		select {
		case ok := <-up:
			if !ok {
				t.Fatalf("sluice dev exited before serving:\n%s", logs)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("sluice dev did not start in 90s:\n%s", logs)
		}
		return dev{cmd, logs}
	}
	stop := func(d dev) {
		t.Helper()
		d.cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck
		done := make(chan error, 1)
		go func() { done <- d.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("sluice dev after Ctrl-C: %v (want exit 0)\n%s", err, d.logs)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("sluice dev did not stop within 30s of Ctrl-C")
		}
	}
	status := func(key string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(state, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	first := start()
	key1, devJSON, pepper := strings.TrimSpace(read("admin.key")), read("dev.json"), read("pepper")
	if status(key1) != 200 {
		t.Fatal("the admin key does not work")
	}
	// A second stack on the same folder refuses and touches nothing.
	second := exec.Command(bin, "dev", "--dir", state)
	second.Dir, second.Env = dir, append(env[:len(env):len(env)], "SLUICE_ADDR=127.0.0.1:0")
	out, err := second.CombinedOutput()
	if second.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "another `sluice dev` is using this state folder") {
		t.Fatalf("second sluice dev: %v\n%s", err, out)
	}
	if strings.TrimSpace(read("admin.key")) != key1 || read("dev.json") != devJSON || read("pepper") != pepper {
		t.Error("the refused second sluice dev changed the first's files")
	}
	if status(key1) != 200 {
		t.Error("the first stack stopped serving after the refused second start")
	}
	stop(first)
	if _, err := os.Stat(filepath.Join(state, "dev.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dev.json left after a clean stop: %v", err)
	}

	// The next start keeps the admin key.
	again := start()
	if k := strings.TrimSpace(read("admin.key")); k != key1 || status(key1) != 200 {
		t.Errorf("second start: admin key %q, want the first's %q", k, key1)
	}
	stop(again)
	// A lost admin.key: a new one, and the old one no longer works.
	os.Remove(filepath.Join(state, "admin.key"))
	third := start()
	key3 := strings.TrimSpace(read("admin.key"))
	if key3 == key1 || status(key3) != 200 || status(key1) != 401 {
		t.Errorf("after losing admin.key: new key status %d, old key status %d (want 200, 401)", status(key3), status(key1))
	}
	stop(third)
}

// TestDoctor: a PostgreSQL that does not answer is a FAIL line with the
// command that fixes it, and exit 1; the test database answers.
func TestDoctor(t *testing.T) {
	t.Parallel()
	port, err := devstack.FreePort() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	code, out, errOut := cli(map[string]string{"DATABASE_URL": closed, "REDIS_URL": testenv.RedisURL()}, "doctor", "--timeout", "2s")
	if code != 1 || !regexp.MustCompile(`FAIL  PostgreSQL server +`+regexp.QuoteMeta(closed)+` from DATABASE_URL: .*refused\n +fix: (sudo )?scripts/testenv.sh`).MatchString(out) ||
		!strings.Contains(out, "ok    Redis server") || !strings.Contains(errOut, "problem(s)") {
		t.Errorf("doctor with PostgreSQL down: exit %d\n%s%s", code, out, errOut)
	}
	_, out, _ = cli(map[string]string{"DATABASE_URL": pgtest.NewURL(t), "REDIS_URL": testenv.RedisURL()}, "doctor")
	if !regexp.MustCompile(`ok    PostgreSQL server .* answers \(PostgreSQL \d+`).MatchString(out) || !strings.Contains(out, "ok    Go ") {
		t.Errorf("doctor with PostgreSQL up:\n%s", out)
	}
}
