package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// internalTestsAllowed are the packages that keep in-package tests although
// their test binaries import packages that import them, and why. Each
// costs its test binary a second compile of those importers (for these
// two, internal/testenv and internal/devstack among them: about 10
// CPU-seconds on a fresh machine); an entry no longer needed fails the
// test, so the list only shrinks.
var internalTestsAllowed = map[string]string{
	"gpuworker/pool": "the claim order and the failure policy are the runner's own state",
	"functions/auth": "FuzzLimitsPatch fuzzes the unexported PATCH body",
}

// TestNoTestRecompiles fails if a package has a test file in its own
// package (package p, not p_test) while its tests also import, directly or
// not, a package that imports p. go test then compiles every such importer
// again, against p with its test files: for shared/redisq that was twelve
// packages (the functions, the worker pool, the app, devstack and
// testenv), about 50 CPU-seconds of every fresh `make test`. A test of an
// unexported name goes through an exported one, or stays in the allowed
// list with its reason.
func TestNoTestRecompiles(t *testing.T) {
	t.Parallel()
	var dirs []string
	has := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && rel != "." && (skipDir(rel) || strings.HasPrefix(rel, "deploy/validate")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, "_test.go") {
			dir := filepath.ToSlash(filepath.Dir(rel))
			if !has[dir] {
				has[dir] = true
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	memo := map[string]map[string]bool{}
	nonTest := func(dir string) map[string]bool {
		if m, ok := memo[dir]; ok {
			return m
		}
		m := imports(t, dir)
		memo[dir] = m
		return m
	}
	used := map[string]bool{}
	checked := 0
	for _, dir := range dirs {
		files, testImports := testFiles(t, dir)
		if len(files) == 0 {
			continue
		}
		checked++
		self := mod + dir
		// Walk the test files' imports; reaching self again means a package
		// in the test binary imports it.
		seen := map[string]bool{}
		var queue []string
		for p := range testImports {
			if p != self && strings.HasPrefix(p, mod) {
				queue = append(queue, p)
			}
		}
		via := ""
		for len(queue) > 0 && via == "" {
			p := queue[0]
			queue = queue[1:]
			if seen[p] {
				continue
			}
			seen[p] = true
			for q := range nonTest(strings.TrimPrefix(p, mod)) {
				if q == self {
					via = strings.TrimPrefix(p, mod)
					break
				}
				if strings.HasPrefix(q, mod) && !seen[q] {
					queue = append(queue, q)
				}
			}
		}
		if via == "" {
			continue
		}
		if _, ok := internalTestsAllowed[dir]; ok {
			used[dir] = true
			continue
		}
		t.Errorf("%s: %s in package %s, and its tests import %s, which imports it: go test compiles that and what is above it twice; test through exported names (an external _test package)",
			dir, strings.Join(files, ", "), filepath.Base(dir), via)
	}
	if checked < 5 {
		t.Fatalf("found %d packages with in-package tests: wrong root?", checked)
	}
	for dir := range internalTestsAllowed {
		if !used[dir] {
			t.Errorf("%s no longer needs its place in internalTestsAllowed: remove it", dir)
		}
	}
}

// testFiles are the _test.go files in dir in its own package, and the
// imports of all its _test.go files.
func testFiles(t *testing.T, dir string) ([]string, map[string]bool) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	var own []string
	imps := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, dir, e.Name()), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(f.Name.Name, "_test") {
			own = append(own, e.Name())
		}
		for _, i := range f.Imports {
			p, _ := strconv.Unquote(i.Path.Value)
			imps[p] = true
		}
	}
	return own, imps
}
