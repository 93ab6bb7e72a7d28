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
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShrinkwrapBuilds lays out each function as `faas-cli build --shrinkwrap`
// does and compiles it as the template's Dockerfile does, so a handler that
// imports something configuration.copy does not ship fails here, not in CI's
// image build.
func TestShrinkwrapBuilds(t *testing.T) {
	t.Parallel()
	goBin := goTool(t)
	root := repoRoot(t)
	s := loadStack(t, root)
	for name := range s.Functions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			build := shrinkwrap(t, root, s, name)
			runGo(t, goBin, build, "build", "-trimpath", "-o", "handler", ".")
			runGo(t, goBin, build, "vet", "-trimpath", "./...")
			// The Dockerfile runs the handler's tests from function/; vet
			// compiles them without needing PostgreSQL or Redis.
			runGo(t, goBin, filepath.Join(build, "function"), "vet", "-trimpath", ".")
		})
	}
}

// TestShrinkwrapIsGofmtFormatted fails on what the Dockerfile's gofmt step
// would refuse: every .go file in the build context, shared/ included.
func TestShrinkwrapIsGofmtFormatted(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	s := loadStack(t, root)
	for name := range s.Functions {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			assertGofmt(t, shrinkwrap(t, root, s, name))
		})
	}
}

// TestTemplateServesAndShutsDown runs a shrinkwrapped function's binary the
// way of-watchdog does: it must answer on :8082 through the function's
// Handle, and exit cleanly on SIGTERM.
func TestTemplateServesAndShutsDown(t *testing.T) {
	t.Parallel()
	goBin := goTool(t)
	root := repoRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:8082")
	if err != nil {
		t.Skipf("port 8082 is taken (%v); the template listens there", err)
	}
	ln.Close()

	// billing-webhook answers every request without PostgreSQL or Redis.
	build := shrinkwrap(t, root, loadStack(t, root), "billing-webhook")
	runGo(t, goBin, build, "build", "-trimpath", "-o", "handler", ".")
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
		t.Fatalf("got %d %+v (%v), want billing-webhook's 503 error with a request id", resp.StatusCode, body, err)
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
	goBin := goTool(t)
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
	out := runGo(t, goBin, root, "list", "-deps", "-f", "{{.ImportPath}}", "./gpuworker")
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

// shrinkwrap reproduces build/<fn>/ as faas-cli writes it: the template at
// the top, the handler's files in function/, and configuration.copy's paths
// inside function/ too.
func shrinkwrap(t *testing.T, root string, s *stack, name string) string {
	t.Helper()
	f := s.Functions[name]
	build := filepath.Join(t.TempDir(), "build", name)
	copyTree(t, filepath.Join(root, "template", f.Lang), build)
	copyTree(t, filepath.Join(root, f.Handler), filepath.Join(build, "function"))
	for _, c := range s.Configuration.Copy {
		copyTree(t, filepath.Join(root, c), filepath.Join(build, "function", c))
	}
	return build
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// runGo runs the go command in dir the way the image build does: the
// template's go.work is in charge wherever there is one (workspace mode
// refuses -mod=mod; checksums come from function/go.sum), and nothing may
// rewrite go.mod or go.sum. GOPROXY is left alone: the module cache serves.
func runGo(t *testing.T, goBin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), goBin, args...)
	cmd.Dir = dir
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") && !strings.HasPrefix(kv, "GOFLAGS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GOFLAGS=-mod=readonly", "GOWORK=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	return p
}

// repoRoot walks up from the test's directory to the module's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
