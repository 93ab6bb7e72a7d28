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
var BuildFlags = []string{"-trimpath", "-ldflags", "-s -w"}

// Build compiles a build context's handler binary to out (absolute), as the
// template's Dockerfile does.
func Build(ctx context.Context, dir, out string) error {
	_, err := Go(ctx, dir, append(append([]string{"build"}, BuildFlags...), "-o", out, ".")...)
	return err
}
