package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// TestBackupRestoreAndModelCommands runs the operator commands as a user
// would, against real PostgreSQL and an in-process S3: backup, restore,
// and model keygen / publish / verify.
func TestBackupRestoreAndModelCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte("storage:\n  endpoint: "+s3test.Start(t)+"\n  bucket: ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": pgtest.NewURL(t), "REDIS_URL": testenv.RedisURL(),
		"SLUICE_KEY_PEPPER": testenv.Pepper, "SLUICE_CONFIG": cfgPath,
		"SLUICE_S3_ACCESS_KEY": "test", "SLUICE_S3_SECRET_KEY": "test"}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(context.Background(), args, &out, &errb, func(k string) string { return env[k] }); code != 0 {
			t.Fatalf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
		}
		return out.String()
	}
	run("migrate")
	if out := run("backup"); !strings.HasPrefix(out, "s3://ops/backups/postgres/") || !strings.Contains(out, "sha256 ") {
		t.Errorf("backup printed %q", out)
	}
	var errb bytes.Buffer
	if code := Main(context.Background(), []string{"restore"}, &errb, &errb, func(k string) string { return env[k] }); code == 0 {
		t.Error("restore without --yes went ahead")
	}
	if out := run("restore", "--yes"); !strings.HasPrefix(out, "restored s3://ops/backups/postgres/") {
		t.Errorf("restore printed %q", out)
	}

	key, pub := filepath.Join(dir, "model.key"), filepath.Join(dir, "model.pub")
	run("model", "keygen", "--key", key, "--pub", pub)
	weights := filepath.Join(dir, "weights")
	os.MkdirAll(weights, 0o755)                                                         //nolint:errcheck
	os.WriteFile(filepath.Join(weights, "model.safetensors"), []byte("weights"), 0o644) //nolint:errcheck
	if out := run("model", "publish", "--name", "tiny", "--version", "2026-11-25", "--dir", weights, "--key", key); !strings.Contains(out, "1 files") {
		t.Errorf("publish printed %q", out)
	}
	if out := run("model", "verify", "--name", "tiny", "--version", "2026-11-25", "--pub", pub); !strings.Contains(out, "signature good, 1 files, 7 bytes") {
		t.Errorf("verify printed %q", out)
	}
}
