// Package shrinkwrap writes and compiles OpenFaaS build contexts exactly as
// `faas-cli build --shrinkwrap` does, through go-sdk's builder, so the tests
// and `sluice gateway` run what an image build would contain.
package shrinkwrap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/openfaas/go-sdk/builder"
	"github.com/openfaas/go-sdk/stack"
)

// Load parses a stack file with ${VAR:-default} substitution, as faas-cli does.
func Load(stackFile string) (*stack.Services, error) {
	s, err := stack.ParseYAMLFile(stackFile, "", "", true)
	if err != nil {
		return nil, fmt.Errorf("shrinkwrap: %s: %w", stackFile, err)
	}
	return s, nil
}

// Context writes buildDir/<fn>/: the function's template, its handler in
// function/ and configuration.copy's paths beside it. Like faas-cli it must
// run from the stack file's folder: go-sdk resolves the handler, the
// template and the copied paths against the working directory and refuses
// paths outside it.
func Context(s *stack.Services, fn, buildDir string) (string, error) {
	f, ok := s.Functions[fn]
	if !ok {
		return "", fmt.Errorf("shrinkwrap: no function %q in the stack file", fn)
	}
	dir, err := builder.CreateBuildContext(fn, f.Handler, f.Language, s.StackConfiguration.CopyExtraPaths,
		builder.WithBuildDir(buildDir))
	if err != nil {
		return "", fmt.Errorf("shrinkwrap %s: %w", fn, err)
	}
	return filepath.Abs(dir)
}

// Go runs the go command in dir the way the template's Dockerfile does: the
// context's go.work is in charge (checksums from function/go.sum) and
// nothing may rewrite go.mod or go.sum. The module and build caches are the
// caller's, so repeated builds are incremental.
func Go(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") && !strings.HasPrefix(kv, "GOFLAGS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GOFLAGS=-mod=readonly", "GOWORK=", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out), nil
}

// BuildFlags are the template Dockerfile's `go build` flags
// (template/Dockerfile): no paths of the build machine and no symbol table
// or DWARF in the handler, which also makes the link about a third faster.
// -dwarf=false: the compiler does not generate the DWARF that -w drops (a
// fifth less compiling), and the tests' builds, which use these flags,
// share make test's compiled packages (its NODWARF).
var BuildFlags = []string{"-trimpath", "-gcflags=all=-dwarf=false", "-ldflags", "-s -w"}

// Build compiles a build context's handler binary to out (absolute), as the
// template's Dockerfile does.
func Build(ctx context.Context, dir, out string) error {
	return BuildCached(ctx, dir, out, ".", BuildFlags...)
}

// BuildCached compiles pkg (in dir, with flags) to out (absolute) as
// `go build -o out` would, except that the linked binary comes from the Go
// build cache when nothing it is built from changed. go build links every
// time (a few CPU-seconds for a function's handler); go run keeps its
// executables in the build cache (Go 1.24+), so the binary is built with
// `go run -exec cp ... pkg out`: the go command hands the cached (or just
// linked) executable's path to cp. A redeploy of an unchanged function,
// and the same binary built by several tests or processes, links once.
// One such build at a time for the user (a lock file beside the build
// cache): two processes building the same binary at once would both miss
// the cache.
func BuildCached(ctx context.Context, dir, out, pkg string, flags ...string) error {
	if !filepath.IsAbs(out) {
		return fmt.Errorf("shrinkwrap: build output %q is not absolute", out)
	}
	unlock, err := lockBuilds(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	// Copied beside out, then renamed over it: out may be a running
	// function's binary (a redeploy), which cannot be written (ETXTBSY).
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	args := append([]string{"run", "-exec", "cp"}, flags...)
	if _, err := Go(ctx, dir, append(args, pkg, tmp)...); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("shrinkwrap: %w", err)
	}
	return nil
}
