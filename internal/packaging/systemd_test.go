package packaging_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
)

// unit is a systemd unit file: section → key → values (keys may repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, section := unit{}, ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", filepath.Base(path), n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// TestSystemdUnits checks the single-machine units: known sections, the
// binaries they start, the shared environment file, and a stop timeout that
// lets in-flight work finish.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "deploy", "systemd")
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(dir, "sluice.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		exec string
		stop time.Duration
	}{
		"sluice-functions.service": {"/usr/local/bin/sluice dev --no-worker", cfg.Server.RequestTimeout},
		"sluice-gpuworker.service": {"/usr/local/bin/gpuworker", cfg.Worker.DrainTimeout},
	} {
		u := parseUnit(t, filepath.Join(dir, name))
		for _, s := range []string{"Unit", "Service", "Install"} {
			if u[s] == nil {
				t.Errorf("%s: no [%s]", name, s)
			}
		}
		svc := u["Service"]
		if len(svc["ExecStart"]) != 1 || !strings.HasPrefix(svc["ExecStart"][0], want.exec) {
			t.Errorf("%s: ExecStart %q, want %s", name, svc["ExecStart"], want.exec)
		}
		if len(svc["EnvironmentFile"]) != 1 || svc["EnvironmentFile"][0] != "/etc/sluice/sluice.env" {
			t.Errorf("%s: EnvironmentFile %q", name, svc["EnvironmentFile"])
		}
		if len(svc["User"]) != 1 || svc["User"][0] == "root" {
			t.Errorf("%s: run as an unprivileged user", name)
		}
		if stop, err := time.ParseDuration(strings.Join(svc["TimeoutStopSec"], "") + "s"); err != nil || stop <= want.stop {
			t.Errorf("%s: TimeoutStopSec %q must exceed %v", name, svc["TimeoutStopSec"], want.stop)
		}
	}
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "SLUICE_KEY_PEPPER"} {
		if !strings.Contains(string(example), "\n"+k+"=") && !strings.HasPrefix(string(example), k+"=") {
			t.Errorf("sluice.env.example lacks %s", k)
		}
	}
}
