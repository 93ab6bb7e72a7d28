package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const root = "../.."

// keyPkg is the one package that may spell a Redis key.
const keyPkg = "shared/redisq/rkey"

// skipDir reports directories that are not Sluice's production Go or Lua.
func skipDir(rel string) bool {
	switch rel {
	case ".git", "tools", "console", "bin", "node_modules":
		return true
	}
	return strings.HasPrefix(rel, "tools/") || strings.Contains(rel, "node_modules")
}

// walk calls fn for every non-test file with the extension, path relative to root.
func walk(t *testing.T, ext string, fn func(rel string, src []byte)) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && skipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if filepath.Ext(p) != ext || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fn(filepath.ToSlash(rel), src)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// isKey reports a string that builds a Redis key: a hash tag, or the key
// prefix followed by more than an error message's space.
func isKey(s string) bool {
	if strings.Contains(s, "{m:") || strings.Contains(s, "{u:") || strings.Contains(s, "{l:") {
		return true
	}
	return strings.HasPrefix(s, "sluice:") && s != "sluice:" && !strings.HasPrefix(s, "sluice: ")
}

// TestOnlyKeyPackageBuildsKeys fails if production Go code outside rkey
// spells a Redis key, its prefix or a hash tag.
func TestOnlyKeyPackageBuildsKeys(t *testing.T) {
	n := 0
	walk(t, ".go", func(rel string, src []byte) {
		if filepath.Dir(rel) == keyPkg {
			return
		}
		n++
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, rel, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(nd ast.Node) bool {
			switch x := nd.(type) {
			case *ast.BasicLit:
				if v, err := strconv.Unquote(x.Value); err == nil && x.Kind == token.STRING && isKey(v) {
					t.Errorf("%s: %q builds a Redis key; use %s", fset.Position(x.Pos()), v, keyPkg)
				}
			case *ast.ValueSpec: // const p = "sluice:" elsewhere is a second prefix
				for _, v := range x.Values {
					if l, ok := v.(*ast.BasicLit); ok && l.Value == `"sluice:"` {
						t.Errorf("%s: a second key prefix; use %s", fset.Position(l.Pos()), keyPkg)
					}
				}
			}
			return true
		})
	})
	if n < 100 {
		t.Fatalf("read only %d Go files: wrong root?", n)
	}
}

var (
	luaCall  = regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?`)
	luaLocal = regexp.MustCompile(`local\s+([\w\s,]+?)\s*=\s*(KEYS\[[^\n]*)`)
	luaFunc  = regexp.MustCompile(`local\s+function\s+(\w+)\(([^)]*)\)`)
	luaLit   = regexp.MustCompile(`'[^']*(?:sluice:|\{m:|\{u:|\{l:)[^']*'|"[^"]*(?:sluice:|\{m:|\{u:|\{l:)[^"]*"`)
)

// TestLuaKeysThroughKEYS fails if a script names a key it was not passed:
// each command's key is KEYS[i] or a local taken from KEYS (Redis Cluster
// routes a script by its KEYS).
//
// A helper function's parameters count as keys from KEYS when every call
// of it, in any script (helpers are prepended to the scripts that use
// them), passes KEYS[i] in the places it uses them as keys.
func TestLuaKeysThroughKEYS(t *testing.T) {
	n := 0
	type helper struct {
		file   string
		params []string
		keyAt  map[int]bool // parameter positions used as keys
	}
	helpers := map[string]*helper{}
	var calls []struct{ file, name, args string }
	walk(t, ".lua", func(rel string, src []byte) {
		s := string(src)
		for _, m := range luaFunc.FindAllStringSubmatch(s, -1) {
			h := &helper{file: rel, keyAt: map[int]bool{}}
			for _, p := range strings.Split(m[2], ",") {
				h.params = append(h.params, strings.TrimSpace(p))
			}
			helpers[m[1]] = h
		}
	})
	walk(t, ".lua", func(rel string, src []byte) {
		n++
		s := string(src)
		if m := luaLit.FindString(s); m != "" {
			t.Errorf("%s: %s spells a key", rel, m)
		}
		fromKeys := map[string]bool{}
		for name, h := range helpers {
			if h.file == rel {
				for _, p := range h.params {
					fromKeys[p] = true
				}
				continue
			}
			for _, m := range regexp.MustCompile(`(?m)^[^-\n]*\b`+name+`\(([^)]*)\)`).FindAllStringSubmatch(s, -1) {
				calls = append(calls, struct{ file, name, args string }{rel, name, m[1]})
			}
		}
		for _, m := range luaLocal.FindAllStringSubmatch(s, -1) {
			for _, name := range strings.Split(m[1], ",") {
				fromKeys[strings.TrimSpace(name)] = true
			}
		}
		for _, m := range luaCall.FindAllStringSubmatch(s, -1) {
			cmd, arg := strings.ToUpper(m[1]), strings.TrimSpace(m[2])
			switch cmd {
			case "TIME", "PUBLISH": // no key; a channel is not a key
				continue
			case "XREADGROUP", "XREAD": // the streams follow STREAMS
				i := strings.Index(s[strings.Index(s, m[0]):], "'STREAMS',")
				if i < 0 {
					t.Errorf("%s: %s without STREAMS", rel, m[0])
					continue
				}
				rest := s[strings.Index(s, m[0])+i+len("'STREAMS',"):]
				arg = strings.TrimSpace(strings.SplitN(rest, ",", 2)[0])
			}
			if strings.HasPrefix(arg, "KEYS[") || fromKeys[arg] {
				for _, h := range helpers {
					if h.file == rel {
						for i, p := range h.params {
							h.keyAt[i] = h.keyAt[i] || p == arg
						}
					}
				}
				continue
			}
			t.Errorf("%s: %s takes %q, not a key from KEYS", rel, m[0], arg)
		}
	})
	if n == 0 {
		t.Fatal("no Lua scripts found")
	}
	for _, c := range calls {
		h := helpers[c.name]
		args := strings.Split(c.args, ",")
		for i := range h.params {
			if h.keyAt[i] && (i >= len(args) || !strings.HasPrefix(strings.TrimSpace(args[i]), "KEYS[")) {
				t.Errorf("%s: %s(%s) passes a key not from KEYS as %s", c.file, c.name, c.args, h.params[i])
			}
		}
	}
}

// imports returns the non-test imports of the Go package in dir.
func imports(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, dir, e.Name()), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range f.Imports {
			p, _ := strconv.Unquote(i.Path.Value)
			out[p] = true
		}
	}
	return out
}

const mod = "github.com/sluice-ai/sluice/"

// pending are forbidden imports still allowed while they are being removed
// (issue 15 item 3 emptied it); an entry that is no longer needed fails the
// test, so the list only shrinks.
var pending = map[string][]string{}

// TestDependencyRules: the functions depend on the domain, not on the
// stores or Stripe's SDK; telemetry does not depend on the stores; the key
// package is a leaf.
func TestDependencyRules(t *testing.T) {
	forbid := func(dir string, bad ...string) {
		got := imports(t, dir)
		has := func(b string) bool { // b or a package below it
			for p := range got {
				if p == b || strings.HasPrefix(p, b+"/") {
					return true
				}
			}
			return false
		}
		for _, b := range bad {
			allowed := false
			for _, p := range pending[dir] {
				allowed = allowed || p == b
			}
			switch {
			case has(b) && !allowed:
				t.Errorf("%s imports %s", dir, b)
			case !has(b) && allowed:
				t.Errorf("%s no longer imports %s: drop it from pending", dir, b)
			}
		}
	}
	fns, _ := filepath.Glob(filepath.Join(root, "functions", "*"))
	if len(fns) < 4 {
		t.Fatalf("found %d functions", len(fns))
	}
	for _, d := range fns {
		rel, _ := filepath.Rel(root, d)
		forbid(filepath.ToSlash(rel), mod+"shared/postgres", "github.com/stripe/stripe-go/v85")
	}
	forbid("shared/telemetry", mod+"shared/postgres", mod+"shared/redisq")
	for p := range imports(t, keyPkg) {
		if strings.Contains(p, ".") {
			t.Errorf("%s imports %s: it must stay stdlib only", keyPkg, p)
		}
	}
}

// jobHashKeys are the rkey names of a job's own keys (its hash and result
// stream): only the queue package touches them.
var jobHashKeys = map[string]bool{"JobKey": true, "ResultKey": true, "JobKeyPattern": true, "JobIDOfKey": true}

// jobHashHarnesses are the operator tools that inspect job hashes to check
// the system from outside (drill, bench); they are not part of it.
var jobHashHarnesses = map[string]bool{"cmd/sluice-drill": true, "cmd/sluice-bench": true}

// TestOnlyQueueTouchesJobHash fails if production Go code outside
// shared/redisq names a job's hash or result-stream key: the job hash is
// read and written only through the queue package's functions.
func TestOnlyQueueTouchesJobHash(t *testing.T) {
	walk(t, ".go", func(rel string, src []byte) {
		dir := filepath.Dir(rel)
		if dir == "shared/redisq" || dir == keyPkg || jobHashHarnesses[dir] {
			return
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, rel, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(nd ast.Node) bool {
			if s, ok := nd.(*ast.SelectorExpr); ok {
				if id, ok := s.X.(*ast.Ident); ok && id.Name == "rkey" && jobHashKeys[s.Sel.Name] {
					t.Errorf("%s: rkey.%s outside shared/redisq; use a redisq function", fset.Position(s.Pos()), s.Sel.Name)
				}
			}
			return true
		})
	})
}
