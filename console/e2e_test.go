package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// chromium is Debian's browser, which scripts/testenv.sh installs.
func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// syncBuffer collects the stack's log for a failure report.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestConsoleInBrowser runs the real stack (PostgreSQL, Redis, the simulator,
// the worker; the functions behind the dev router) and drives the console in
// headless Chromium with console/e2e/console.test.mjs: sign up, create a key,
// call the API with it, see the usage, revoke it and see the API refuse it;
// an admin enrols TOTP, logs in with a code, finds the user and disables it,
// and the user's key stops working. SLUICE_CONSOLE_SCREENSHOTS names a folder
// for PNGs of the pages (make screenshots writes docs/console).
//
// It fails rather than skips when Chromium or the npm packages are missing:
// make test installs them (npm ci in console/e2e; .ci/run installs chromium).
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(chromium()); err != nil {
		t.Fatalf("Chromium not found at %s (sudo scripts/testenv.sh installs it; make test runs it): %v", chromium(), err)
	}
	if _, err := os.Stat("e2e/node_modules/playwright-core"); err != nil {
		t.Fatalf("playwright-core not installed (make test runs npm ci in console/e2e): %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	sim := testenv.Sim(t)
	dir := t.TempDir()
	model := testenv.Name("console")
	// The model's engine models a prefix cache, so a repeated prompt shows
	// cached tokens, their hit rate and what they saved on the usage page.
	engine := testenv.PrefixCacheSim(t, model)
	cfgPath := filepath.Join(dir, "sluice.yaml")
	yaml := fmt.Sprintf(`
inference:
  models:
    - name: %[1]s
      max_batch_size: 8
      max_model_len: 1024
      endpoints: [%[2]s]
pricing:
  %[1]s:
    input_tokens: 0.0001
    output_tokens: 0.0002
    cached_input_tokens: 0.000025
auth:
  identity:
    limits:
      # Every browser test signs up from 127.0.0.1, and the counter is
      # Redis-wide: repeated runs must not hit the real default (10).
      signup_per_address: 100000
# Usage by day comes from the rollups: fold every second so the usage page
# shows a request within the test's wait (the default is a minute).
usage_rollup:
  schedule: 1s
`, model, engine)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SLUICE_CONFIG":         cfgPath,
		"DATABASE_URL":          pgtest.NewURL(t),
		"REDIS_URL":             testenv.RedisURL(),
		"SLUICE_KEY_PEPPER":     testenv.Pepper,
		"SLUICE_WEBHOOK_SECRET": "whsec-test",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, Log: log, Dir: filepath.Join(dir, "state"), SimBin: sim}, ln)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		st.Wait() //nolint:errcheck
	})
	base := "http://" + st.Addr

	// The admin the browser logs in as, made through the public admin API
	// with the operator key `sluice dev` writes (API keys need no MFA).
	adminEmail, adminPassword := testenv.Name("admin")+"@example.com", "admin password "+testenv.Name("pw")
	body, _ := json.Marshal(map[string]string{"email": adminEmail, "password": adminPassword, "role": "admin", "tier": "enterprise"})
	req, _ := http.NewRequest(http.MethodPost, base+"/auth/v1/admin/users", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+st.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating the admin: %d %s", resp.StatusCode, b)
	}

	runCtx, stop := context.WithTimeout(ctx, 5*time.Minute) // make test runs it twice at once (the cluster pass) on two cores
	defer stop()
	cmd := exec.CommandContext(runCtx, node, "console.test.mjs")
	cmd.Dir = "e2e"
	cmd.Env = append(os.Environ(), "SLUICE_URL="+base, "MODEL="+model, "ADMIN_EMAIL="+adminEmail,
		"ADMIN_PASSWORD="+adminPassword, "CHROMIUM="+chromium())
	if d := os.Getenv("SLUICE_CONSOLE_SCREENSHOTS"); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "SCREENSHOTS="+abs)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("browser test:\n%s", out)
	if err != nil {
		l := logs.String()
		if len(l) > 4000 {
			l = l[len(l)-4000:]
		}
		t.Fatalf("browser test failed: %v\nstack log (warnings and errors):\n%s", err, l)
	}
	if n := strings.Count(string(out), "ok - "); n < 10 {
		t.Fatalf("the browser test passed only %d steps", n)
	}
}
