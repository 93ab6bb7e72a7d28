package packaging_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluice-ai/sluice/shared/config"
)

// stack is the part of faas-cli's stack schema openfaas.yml uses; decoding is
// strict, so a misspelt key fails here instead of being ignored by faas-cli.
type stack struct {
	Version  string `yaml:"version"`
	Provider struct {
		Name    string `yaml:"name"`
		Gateway string `yaml:"gateway"`
	} `yaml:"provider"`
	Configuration struct {
		Copy      []string `yaml:"copy"`
		Templates []struct {
			Name   string `yaml:"name"`
			Source string `yaml:"source"`
		} `yaml:"templates"`
	} `yaml:"configuration"`
	Functions map[string]stackFunction `yaml:"functions"`
}

type stackFunction struct {
	Lang            string            `yaml:"lang"`
	Handler         string            `yaml:"handler"`
	Image           string            `yaml:"image"`
	Environment     map[string]string `yaml:"environment"`
	EnvironmentFile []string          `yaml:"environment_file"`
	Secrets         []string          `yaml:"secrets"`
	Labels          map[string]string `yaml:"labels"`
	Annotations     map[string]string `yaml:"annotations"`
	Requests        *stackResources   `yaml:"requests"`
	Limits          *stackResources   `yaml:"limits"`
	BuildArgs       map[string]string `yaml:"build_args"`
}

type stackResources struct {
	Memory string `yaml:"memory"`
	CPU    string `yaml:"cpu"`
}

var placeholder = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// loadStack reads openfaas.yml as faas-cli does with an empty environment:
// ${VAR:-default} becomes default, ${VAR} becomes "".
func loadStack(t *testing.T, root string) *stack {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "openfaas.yml"))
	if err != nil {
		t.Fatal(err)
	}
	raw = placeholder.ReplaceAllFunc(raw, func(m []byte) []byte {
		return placeholder.FindSubmatch(m)[2]
	})
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var s stack
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("openfaas.yml: %v", err)
	}
	return &s
}

func TestStackFile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	s := loadStack(t, root)
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}

	if s.Provider.Name != "openfaas" || s.Provider.Gateway != "http://127.0.0.1:8080" {
		t.Errorf("provider = %+v, want openfaas at http://127.0.0.1:8080 by default", s.Provider)
	}
	if want := []string{"./go.mod", "./go.sum", "./shared"}; !slices.Equal(s.Configuration.Copy, want) {
		t.Errorf("configuration.copy = %q, want %q", s.Configuration.Copy, want)
	}
	for _, c := range s.Configuration.Copy {
		if _, err := os.Stat(filepath.Join(root, c)); err != nil {
			t.Errorf("configuration.copy: %v", err)
		}
	}
	var names []string
	for name := range s.Functions {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"auth", "billing-webhook", "submit", "usage-rollup"}; !slices.Equal(names, want) {
		t.Fatalf("functions = %q, want %q", names, want)
	}

	gw := cfg.Autoscaling["api_gateway"]
	for _, name := range names {
		f := s.Functions[name]
		t.Run(name, func(t *testing.T) {
			if f.Lang != "golang-sluice" {
				t.Errorf("lang = %q, want golang-sluice", f.Lang)
			}
			if _, err := os.Stat(filepath.Join(root, "template", f.Lang, "template.yml")); err != nil {
				t.Errorf("template: %v", err)
			}
			if want := "ghcr.io/sluice-ai/" + name + ":latest"; f.Image != want {
				t.Errorf("image = %q, want %q by default", f.Image, want)
			}
			if !exportsHandle(t, filepath.Join(root, f.Handler)) {
				t.Errorf("handler %s: no package there exports func Handle(w, r)", f.Handler)
			}
			for _, s := range []string{"sluice-key-pepper", "sluice-webhook-secret"} {
				if !slices.Contains(f.Secrets, s) {
					t.Errorf("secrets = %q, missing %s", f.Secrets, s)
				}
			}
			for _, k := range []string{"DATABASE_URL", "REDIS_URL"} {
				if _, ok := f.Environment[k]; !ok {
					t.Errorf("environment: missing %s", k)
				}
			}
			// of-watchdog cuts a response at its own write_timeout, so the
			// handler's must not be shorter than the request it serves.
			rt, wt := duration(t, f.Environment["read_timeout"]), duration(t, f.Environment["write_timeout"])
			if et := duration(t, f.Environment["exec_timeout"]); rt <= 0 || wt <= 0 || wt < et {
				t.Errorf("timeouts read=%v write=%v exec=%v: want all set, write >= exec", rt, wt, et)
			}
			if name == "submit" && wt <= cfg.Server.RequestTimeout {
				t.Errorf("submit write_timeout %v must exceed server.request_timeout %v", wt, cfg.Server.RequestTimeout)
			}
			if f.Labels["com.openfaas.scale.min"] != strconv.Itoa(gw.MinReplicas) || f.Labels["com.openfaas.scale.max"] != strconv.Itoa(gw.MaxReplicas) {
				t.Errorf("scale labels = %v, want the design's api_gateway rule %+v", f.Labels, gw)
			}
			if f.Requests == nil || f.Limits == nil || f.Requests.Memory == "" || f.Limits.Memory == "" {
				t.Errorf("requests/limits: want memory set on both, got %+v %+v", f.Requests, f.Limits)
			}
		})
	}

	billing := s.Functions["billing-webhook"]
	for _, sec := range []string{"stripe-secret-key", "stripe-webhook-secret"} {
		if !slices.Contains(billing.Secrets, sec) {
			t.Errorf("billing-webhook secrets = %q, missing %s", billing.Secrets, sec)
		}
	}
	if !slices.Contains(s.Functions["usage-rollup"].Secrets, "stripe-secret-key") {
		t.Errorf("usage-rollup secrets = %q, missing stripe-secret-key (meter events)", s.Functions["usage-rollup"].Secrets)
	}
	rollup := s.Functions["usage-rollup"].Annotations
	if rollup["topic"] != "cron-function" || rollup["schedule"] != "*/5 * * * *" {
		t.Errorf("usage-rollup annotations = %v, want the cron-connector schedule every 5 minutes", rollup)
	}
}

// exportsHandle reports whether dir holds a package with a top-level
// func Handle(w http.ResponseWriter, r *http.Request), the template's contract.
func exportsHandle(t *testing.T, dir string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		return false
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if ok && fn.Recv == nil && fn.Name.Name == "Handle" && fn.Type.Params.NumFields() == 2 {
				return true
			}
		}
	}
	return false
}

// duration reads a watchdog timeout: seconds or a Go duration; "" is 0.
func duration(t *testing.T, v string) time.Duration {
	t.Helper()
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	d, err := time.ParseDuration(v + "s")
	if err != nil {
		t.Errorf("timeout %q is neither seconds nor a duration", v)
	}
	return d
}
