package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
)

// TestDatabaseBlock: the read replica's bounds have documented defaults, a
// file may change them, and nonsense is refused at load.
func TestDatabaseBlock(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Database; d.ReadMaxLag != 5*time.Second || d.ReadCheckInterval != time.Second || d.ReadCheckTimeout != time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	cfg, err = config.Parse([]byte("database:\n  read_max_lag: 30s\n"))
	if err != nil || cfg.Database.ReadMaxLag != 30*time.Second || cfg.Database.ReadCheckInterval != time.Second {
		t.Fatalf("file: %+v %v", cfg.Database, err)
	}
	for _, bad := range []string{"read_max_lag: -1s", "read_check_interval: -1s", "read_check_timeout: 1ms"} {
		if _, err := config.Parse([]byte("database:\n  " + bad + "\n")); err == nil || !strings.Contains(err.Error(), "database.") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
