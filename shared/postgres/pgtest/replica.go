package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pglocal"
)

// Pair is a private PostgreSQL primary with one streaming replica, started
// by this test binary on free loopback ports under a temporary folder: the
// shared test server allows no replication connections. It runs as the
// local stack's private cluster does (internal/pglocal): as root, as the
// postgres user.
//
// One Pair serves the whole test binary (see Replica), so the methods that
// stop the replica or pause its replay affect every test using it: tests
// that call them must not run in parallel with other users of the Pair.
type Pair struct {
	dir  string
	bin  string
	cred *syscall.Credential

	// Primary and Replica are the base URLs of the two servers' postgres
	// database, as the postgres superuser.
	Primary, Replica string

	mu      sync.Mutex
	primary *server
	replica *server
}

type server struct {
	data string
	port int
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	pairOnce sync.Once
	pair     *Pair
	pairErr  error
)

// Replica returns the test binary's primary and replica, starting them on
// first use (a few seconds). They are stopped by Main, or, without it, die
// with the test binary.
func Replica(tb testing.TB) *Pair {
	tb.Helper()
	pairOnce.Do(func() { pair, pairErr = startPair() })
	if pairErr != nil {
		tb.Fatalf("pgtest: primary and replica: %v", pairErr)
	}
	return pair
}

// Main runs the tests and then stops the Pair, if one was started, and
// removes its folder. Use it as TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if pair != nil {
		pair.close()
	}
	return code
}

func startPair() (*Pair, error) {
	bin, err := pglocal.BinDir()
	if err != nil {
		return nil, err
	}
	cred, err := pglocal.Credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-pgreplica-")
	if err != nil {
		return nil, err
	}
	p := &Pair{dir: dir, bin: bin, cred: cred}
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	pglocal.Hand(dir, cred)
	p.primary = &server{data: filepath.Join(dir, "primary"), log: filepath.Join(dir, "primary.log")}
	p.replica = &server{data: filepath.Join(dir, "replica"), log: filepath.Join(dir, "replica.log")}
	if err := p.run("initdb", "-D", p.primary.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--no-instructions", "--no-sync"); err != nil {
		return nil, err
	}
	// initdb's pg_hba.conf already trusts local replication connections on
	// most builds; say so explicitly rather than depend on it.
	hba, err := os.OpenFile(filepath.Join(p.primary.data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = hba.WriteString("host replication all 127.0.0.1/32 trust\n")
	hba.Close()
	if err != nil {
		return nil, err
	}
	if err := p.start(p.primary,
		"-c", "wal_level=replica", "-c", "max_wal_senders=4",
		// A replica killed by a test catches up from the kept WAL.
		"-c", "wal_keep_size=256MB"); err != nil {
		return nil, err
	}
	if err := p.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(p.primary.port), "-U", "postgres",
		"-D", p.replica.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		return nil, err
	}
	if err := p.startReplica(); err != nil {
		return nil, err
	}
	p.Primary = baseURL(p.primary.port)
	p.Replica = baseURL(p.replica.port)
	ok = true
	return p, nil
}

func baseURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// run runs a PostgreSQL program as the server's user and waits for it.
func (p *Pair) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (p *Pair) startReplica() error {
	return p.start(p.replica, "-c", "hot_standby=on",
		// Replay the tests' writes at once, and never cancel a report
		// query for a conflicting vacuum while a test reads.
		"-c", "hot_standby_feedback=on", "-c", "wal_receiver_status_interval=1s")
}

// start runs postgres in the foreground as a child of the test binary
// (SIGKILLed if the binary dies, so no server outlives it) and waits until
// it accepts connections. The first start picks a free port; a restart
// reuses it, so URLs handed out stay valid.
func (p *Pair) start(s *server, opts ...string) error {
	if s.port == 0 {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.port = port
	}
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"-D", s.data, "-p", strconv.Itoa(s.port), "-h", "127.0.0.1", "-k", p.dir,
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"}, opts...)
	cmd := exec.Command(filepath.Join(p.bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(s.done) }() //nolint:errcheck // the exit is seen through done
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := pgx.Connect(ctx, baseURL(s.port))
		if err == nil {
			c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		select {
		case <-s.done:
			return fmt.Errorf("postgres on port %d exited: %s", s.port, tail(s.log))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on port %d not ready: %v: %s", s.port, err, tail(s.log))
		}
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *server) kill() {
	if s == nil || s.cmd == nil {
		return
	}
	// Every backend is a process group of its own (PostgreSQL makes them
	// so): stop the postmaster forking, then kill its children and it, as
	// a crashed machine would lose them all at once. Left alive, a backend
	// answers its client until it notices the postmaster is gone.
	pid := s.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP) //nolint:errcheck // already gone is fine
	kids := children(pid)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL) //nolint:errcheck
	}
	syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck
	<-s.done
	s.cmd = nil
	// A server started on the same folder while a killed backend still
	// holds the shared memory refuses to ("Terminate any old server
	// processes"): wait until they are gone.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		alive := false
		for _, k := range kids {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k)); err == nil && !strings.Contains(string(b), ") Z ") {
				alive = true
			}
		}
		if !alive {
			return
		}
	}
}

// children lists the processes whose parent is pid (Linux /proc).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		st := string(b)
		if i := strings.LastIndexByte(st, ')'); i >= 0 {
			if f := strings.Fields(st[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				out = append(out, n)
			}
		}
	}
	return out
}

func (s *server) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck // fast shutdown; already gone is fine
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.kill()
	}
	s.cmd = nil
}

func (p *Pair) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replica.stop()
	p.primary.stop()
	os.RemoveAll(p.dir) //nolint:errcheck
}

// KillReplica kills the replica's postmaster and backends with SIGKILL, as
// a crashed replica: its connections die with it.
func (p *Pair) KillReplica(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replica.kill()
}

// StartReplica starts the replica again on its port after KillReplica; it
// recovers and streams from the primary again.
func (p *Pair) StartReplica(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.replica.cmd != nil {
		return
	}
	// A killed replica's shared memory may still be attached for a moment
	// (a backend not yet reaped): try again rather than fail.
	var err error
	for range 5 {
		if err = p.startReplica(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	tb.Fatalf("pgtest: restart the replica: %v", err)
}

// PauseReplay stops the replica applying WAL (pg_wal_replay_pause): it
// keeps receiving, and falls behind the primary, until ResumeReplay.
func (p *Pair) PauseReplay(tb testing.TB) {
	tb.Helper()
	p.exec(tb, p.Replica, "SELECT pg_wal_replay_pause()")
}

// ResumeReplay lets the replica apply WAL again.
func (p *Pair) ResumeReplay(tb testing.TB) {
	tb.Helper()
	p.exec(tb, p.Replica, "SELECT pg_wal_replay_resume()")
}

// WaitReplayed waits until the replica has applied everything the primary
// had flushed when it was called.
func (p *Pair) WaitReplayed(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	var lsn string
	p.query(tb, p.Primary, "SELECT pg_current_wal_flush_lsn()::text", &lsn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var done bool
		p.query(tb, p.Replica, "SELECT pg_last_wal_replay_lsn() >= '"+lsn+"'::pg_lsn", &done)
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: the replica did not replay up to %s: %s", lsn, tail(p.replica.log))
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *Pair) exec(tb testing.TB, base, sql string) {
	tb.Helper()
	var discard any
	p.query(tb, base, sql, &discard)
}

func (p *Pair) query(tb testing.TB, base, sql string, dst ...any) {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("pgtest: connect %s: %v", base, err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, sql).Scan(dst...); err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// NewURLs creates a fresh schema on the primary, migrated and dropped when
// the test ends, waits until the replica has it, and returns the primary's
// and the replica's URLs for it.
func (p *Pair) NewURLs(tb testing.TB) (primary, replica string) {
	tb.Helper()
	ctx := context.Background()
	b := make([]byte, 6)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	c, err := pgx.Connect(ctx, p.Primary)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	_, err = c.Exec(ctx, "CREATE SCHEMA "+schema)
	c.Close(ctx)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), p.Primary); err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") //nolint:errcheck
			c.Close(context.Background())
		}
	})
	primary, replica = withSchema(tb, p.Primary, schema), withSchema(tb, p.Replica, schema)
	db, err := postgres.Open(ctx, primary)
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		tb.Fatal(err)
	}
	p.WaitReplayed(tb)
	return primary, replica
}

// withSchema is base with pgx's search_path set to schema, the rest of its
// query (TEST_DATABASE_URL's options, say) kept as pgx reads it.
func withSchema(tb testing.TB, base, schema string) string {
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	qv := u.Query()
	qv.Set("search_path", schema)
	u.RawQuery = postgres.EncodeQuery(qv)
	return u.String()
}
