package archtest

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolsShareModuleVersions fails if a module required by the tools
// module (tools/go.mod: the simulator, promtool, stripe-mock, the Lambda
// emulator, the OpenID provider) is at another version in go.mod or
// deploy/validate/go.mod. The test run builds all three with the same flags
// (-trimpath, CGO_ENABLED=0), so a shared module at one version compiles
// once on a fresh machine instead of once per module; a bump in one go.mod
// that leaves the others behind costs minutes of every fresh `make test`.
func TestToolsShareModuleVersions(t *testing.T) {
	tools := requires(t, "tools/go.mod")
	if len(tools) < 50 {
		t.Fatalf("read %d requirements from tools/go.mod: wrong file?", len(tools))
	}
	for _, other := range []string{"go.mod", "deploy/validate/go.mod"} {
		shared := 0
		for mod, v := range requires(t, other) {
			tv, ok := tools[mod]
			if !ok {
				continue
			}
			shared++
			if tv != v {
				t.Errorf("%s requires %s %s, tools/go.mod %s: align them (go get %s@<the higher> in the other)", other, mod, v, tv, mod)
			}
		}
		t.Logf("%s shares %d modules with tools/go.mod", other, shared)
	}
}

// requires reads a go.mod's require lines (module → version).
func requires(t *testing.T, rel string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "require (":
			in = true
			continue
		case in && line == ")":
			in = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !in:
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 {
			out[f[0]] = f[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
