package packaging_test

import (
	"bytes"
	"net/url"
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

// composeFile is the part of the Compose specification compose.yaml uses;
// decoding is strict, so a misspelt key fails here, not at `docker compose up`.
type composeFile struct {
	Name     string                    `yaml:"name"`
	XEnv     map[string]string         `yaml:"x-sluice-env"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]struct{}       `yaml:"volumes"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Restart         string            `yaml:"restart"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []string          `yaml:"volumes"`
	Ports           []string          `yaml:"ports"`
	IPC             string            `yaml:"ipc"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	DependsOn       yaml.Node         `yaml:"depends_on"`
	Healthcheck     *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
	Deploy *struct {
		Resources struct {
			Reservations struct {
				Devices []struct {
					Driver       string   `yaml:"driver"`
					Count        int      `yaml:"count"`
					Capabilities []string `yaml:"capabilities"`
				} `yaml:"devices"`
			} `yaml:"reservations"`
		} `yaml:"resources"`
	} `yaml:"deploy"`
}

// dependsOn lists the services named in depends_on, short or long form.
func (s composeService) dependsOn(t *testing.T) []string {
	var names []string
	switch s.DependsOn.Kind {
	case 0:
	case yaml.SequenceNode:
		if err := s.DependsOn.Decode(&names); err != nil {
			t.Fatal(err)
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			t.Fatal(err)
		}
		for n := range m {
			names = append(names, n)
		}
	}
	return names
}

var requiredVar = regexp.MustCompile(`\$\{([A-Z_]+):\?`)

func TestComposeFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "deploy", "compose")
	raw, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var c composeFile
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"postgres", "redis", "minio", "vllm", "functions", "worker", "prometheus", "grafana", "loki", "jaeger"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("no %s service", want)
		}
	}
	for name, s := range c.Services {
		if s.Image == "" || (strings.HasSuffix(s.Image, ":latest") && s.Build == nil) {
			t.Errorf("%s: image %q: pin a version", name, s.Image)
		}
		if s.Restart == "" {
			t.Errorf("%s: no restart policy", name)
		}
		for _, d := range s.dependsOn(t) {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("%s depends on %s, which does not exist", name, d)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s on every interface; nginx is the one public entry", name, p)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok && !strings.HasPrefix(src, "/") {
				t.Errorf("%s mounts volume %s, which is not declared", name, src)
			}
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(dir, s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: build: %v", name, err)
			}
		}
	}
	if cmd := strings.Join(c.Services["redis"].Command, " "); !strings.Contains(cmd, "--appendonly yes") {
		t.Errorf("redis command %q: want --appendonly yes", cmd)
	}
	if dev := c.Services["vllm"].Deploy; dev == nil || len(dev.Resources.Reservations.Devices) != 1 ||
		dev.Resources.Reservations.Devices[0].Driver != "nvidia" {
		t.Errorf("vllm: want one NVIDIA GPU reserved")
	}

	// Secrets come from .env, never from the file; env.example lists them all.
	example, err := os.ReadFile(filepath.Join(dir, "env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range requiredVar.FindAllStringSubmatch(string(raw), -1) {
		if !bytes.Contains(example, []byte("\n"+m[1]+"=")) {
			t.Errorf("${%s:?} is required but env.example does not list it", m[1])
		}
	}

	// The configuration the functions and worker load, and the engine it names.
	cfgRaw, err := os.ReadFile(filepath.Join(dir, "sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(cfgRaw)
	if err != nil {
		t.Fatalf("sluice.yaml: %v", err)
	}
	for _, svc := range []string{"functions", "worker"} {
		s := c.Services[svc]
		if s.Environment["SLUICE_CONFIG"] != "/etc/sluice/sluice.yaml" || !slices.Contains(s.Volumes, "./sluice.yaml:/etc/sluice/sluice.yaml:ro") {
			t.Errorf("%s: SLUICE_CONFIG %q is not the mounted sluice.yaml", svc, s.Environment["SLUICE_CONFIG"])
		}
		for _, k := range []string{"DATABASE_URL", "REDIS_URL", "SLUICE_WEBHOOK_SECRET"} {
			if s.Environment[k] == "" {
				t.Errorf("%s: %s not set", svc, k)
			}
		}
	}
	// Only the functions verify API keys: the worker is not given the pepper.
	if c.Services["functions"].Environment["SLUICE_KEY_PEPPER"] == "" {
		t.Error("functions: SLUICE_KEY_PEPPER not set")
	}
	if v, ok := c.Services["worker"].Environment["SLUICE_KEY_PEPPER"]; ok {
		t.Errorf("worker: given SLUICE_KEY_PEPPER (%q); it verifies no key and must not hold the pepper", v)
	}
	if len(cfg.Worker.Models) != 1 {
		t.Fatalf("worker.models = %q, want the vllm service's model", cfg.Worker.Models)
	}
	model, _ := cfg.Model(cfg.Worker.Models[0])
	if model == nil || len(model.Endpoints) != 1 {
		t.Fatalf("worker model %q: want one endpoint", cfg.Worker.Models[0])
	}
	ep, err := url.Parse(model.Endpoints[0])
	if err != nil || ep.Hostname() != "vllm" {
		t.Errorf("endpoint %q: want the vllm service", model.Endpoints[0])
	}
	vllm := c.Services["vllm"].Command
	for flag, want := range map[string]string{"--served-model-name": model.Name, "--port": ep.Port(),
		"--max-num-seqs": strconv.Itoa(model.MaxBatchSize), "--max-model-len": strconv.Itoa(model.MaxModelLen)} {
		if got := flagValue(vllm, flag); got != want {
			t.Errorf("vllm %s = %q, want %q", flag, got, want)
		}
	}
	grace, err := time.ParseDuration(c.Services["worker"].StopGracePeriod)
	if err != nil || grace <= cfg.Worker.DrainTimeout {
		t.Errorf("worker stop_grace_period %q must exceed worker.drain_timeout %v", c.Services["worker"].StopGracePeriod, cfg.Worker.DrainTimeout)
	}
	prom, err := os.ReadFile(filepath.Join(dir, "prometheus.yml"))
	if err != nil || !bytes.Contains(prom, []byte(`"vllm:`+ep.Port()+`"`)) {
		t.Errorf("prometheus.yml does not scrape vllm:%s (%v)", ep.Port(), err)
	}
}
