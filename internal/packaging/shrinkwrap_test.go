package packaging_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"go/format"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	sw "github.com/sluice-ai/sluice/internal/shrinkwrap"
)

// TestShrinkwrapBuilds lays out each function as `faas-cli build --shrinkwrap`
// does and compiles it as the template's Dockerfile does, so a handler that
// imports something configuration.copy does not ship fails here, not in CI's
// image build.
func TestShrinkwrapBuilds(t *testing.T) {
	t.Parallel()
	s := loadStack(t, repoRoot(t))
	for name := range s.Functions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			build := shrinkwrap(t, name)
			if err := sw.Build(t.Context(), build, filepath.Join(build, "handler")); err != nil {
				t.Fatal(err)
			}
			// The handler's own tests, run from function/ as the
			// Dockerfile runs them, against make test's PostgreSQL and
			// Redis. The shared packages' tests run in the repository's own
			// suite, not four more times here; so do the handler's tests
			// that need more of the repository than a build context
			// carries (tagged !shrinkwrap, as the Dockerfile builds them).
			// Without go test's vet, as make test's own go test: vet
			// computes its facts for every dependency, in each of the four
			// builds at once (170 CPU-seconds of a fresh run); `make vet`
			// vets these same sources. With the handler's build flags, so
			// the packages it shares with make test compile once.
			args := slices.Concat([]string{"test", "-tags", "shrinkwrap", "-count=1", "-vet=off", "-v"}, sw.BuildFlags, []string{"."})
			out := runGo(t, filepath.Join(build, "function"), args...)
			t.Logf("go test in %s/function: %d passed\n%s", name, strings.Count(out, "--- PASS"), lastLine(out))
		})
	}
}

// TestShrinkwrapIsGofmtFormatted fails on what the Dockerfile's gofmt step
// would refuse: every .go file in the build context, shared/ included.
func TestShrinkwrapIsGofmtFormatted(t *testing.T) {
	t.Parallel()
	for name := range loadStack(t, repoRoot(t)).Functions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			assertGofmt(t, shrinkwrap(t, name))
		})
	}
}

// TestTemplateServesAndShutsDown runs a shrinkwrapped function's binary the
// way of-watchdog does: it must answer on :8082 through the function's
// Handle, and exit cleanly on SIGTERM.
func TestTemplateServesAndShutsDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:8082")
	if err != nil {
		t.Skipf("port 8082 is taken (%v); the template listens there", err)
	}
	ln.Close()

	// Without PostgreSQL or Redis configured, the function answers 503
	// (starting: its dependencies cannot be reached) through its Handle.
	build := shrinkwrap(t, "billing-webhook")
	if err := sw.Build(t.Context(), build, filepath.Join(build, "handler")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), filepath.Join(build, "handler"))
	cmd.Dir = build
	// An empty environment for the function, so it never reaches a real
	// database a developer has configured.
	cmd.Env = []string{"read_timeout=5", "write_timeout=3s", "SLUICE_CONFIG=", "DATABASE_URL=", "REDIS_URL=",
		"SLUICE_KEY_PEPPER=", "SLUICE_WEBHOOK_SECRET="}
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			<-exited
		}
	})

	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = http.Post("http://127.0.0.1:8082/", "application/json", strings.NewReader("{}"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("handler never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code == "" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("got %d %+v (%v), want the function's 503 error with a request id", resp.StatusCode, body, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM\n%s", logs.String())
	}
}

// TestWorkerImageCopiesItsImports checks that gpuworker/Dockerfile copies
// every directory of this module the worker imports.
func TestWorkerImageCopiesItsImports(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, "gpuworker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var copied []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[0] == "COPY" && !strings.HasPrefix(fields[1], "--") {
			for _, src := range fields[1 : len(fields)-1] {
				copied = append(copied, filepath.Clean(src))
			}
		}
	}
	const module = "github.com/sluice-ai/sluice"
	out := runGo(t, root, "list", "-deps", "-f", "{{.ImportPath}}", "./gpuworker")
	for _, pkg := range strings.Fields(out) {
		rel, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			continue
		}
		if !coveredBy(rel, copied) {
			t.Errorf("the worker imports %s but gpuworker/Dockerfile copies only %q", pkg, copied)
		}
	}
}

// TestWorkerImageHasGPUTelemetry checks that the worker image is built with
// cgo (without it NVML is compiled out and a GPU node exports no GPU
// metrics) onto a base with glibc, which a cgo binary and dlopen of
// libnvidia-ml need: a static base would not start it.
func TestWorkerImageHasGPUTelemetry(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "gpuworker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var build, base string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "FROM":
			base = f[1]
		case strings.Contains(line, "go build") && strings.Contains(line, "./gpuworker"):
			build = line
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=1") {
		t.Errorf("the worker is not built with CGO_ENABLED=1: %q", build)
	}
	if strings.Contains(base, "static") || strings.Contains(base, "scratch") {
		t.Errorf("final image %s has no glibc for the cgo worker", base)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func assertGofmt(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if out, err := format.Source(src); err != nil {
			t.Errorf("%s: %v", rel, err)
		} else if !bytes.Equal(out, src) {
			t.Errorf("%s is not gofmt-formatted: the image build would stop there (gofmt -w fixes it)", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func coveredBy(dir string, copied []string) bool {
	for _, c := range copied {
		if dir == c || strings.HasPrefix(dir, c+"/") {
			return true
		}
	}
	return false
}

// shrinkwrap writes build/<fn>/ with go-sdk's builder, as
// `faas-cli build --shrinkwrap` does (TestMain made the repository root the
// working directory, as faas-cli needs).
func shrinkwrap(t *testing.T, name string) string {
	t.Helper()
	s, err := sw.Load("openfaas.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := sw.Context(s, name, filepath.Join(t.TempDir(), "build"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// runGo runs the go command in dir as the template's Dockerfile does.
func runGo(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := sw.Go(t.Context(), dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMain(m *testing.M) {
	// go-sdk's builder resolves the stack's paths against the working
	// directory, like faas-cli run beside openfaas.yml. Changing it here,
	// before any test runs, keeps parallel tests safe.
	root := findRoot()
	if err := os.Chdir(root); err != nil {
		panic(err)
	}
	// The functions' own tests run inside build contexts that have no bin/:
	// point them at the repository's stripe-mock (make test sets it too).
	if os.Getenv("SLUICE_STRIPE_MOCK") == "" {
		os.Setenv("SLUICE_STRIPE_MOCK", filepath.Join(root, "bin", "stripe-mock"))
	}
	os.Exit(m.Run())
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// findRoot walks up from the test's directory to the module's go.mod.
func findRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			panic(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("no go.mod above the test's directory")
		}
		dir = parent
	}
}
