package devstack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// TestDevServesAdapters: `sluice dev` starts a model's simulator with its
// LoRA adapters (--lora-modules), so a request for an adapter is answered
// by the engine under the adapter's name.
func TestDevServesAdapters(t *testing.T) {
	t.Parallel()
	model := testenv.Name("devlora")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - {name: %[1]s, max_model_len: 1024, max_loras: 2, adapters: [{name: %[1]s-a, source: /adapters/a}, {name: %[1]s-b, source: /adapters/b}]}
pricing: {}
`, model)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env = config.Env{DatabaseURL: pgtest.NewURL(t), RedisURL: testenv.RedisURL(), KeyPepper: testenv.Pepper,
		WebhookSecret: "whsec-test", WorkerName: testenv.Name("w")}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dir: t.TempDir(), SimBin: testenv.Sim(t)}, ln)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); st.Wait() }) //nolint:errcheck
	for _, name := range []string{model + "-a", model + "-b"} {
		req, _ := http.NewRequest("POST", "http://"+st.Addr+"/v1/chat/completions",
			strings.NewReader(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, name)))
		req.Header.Set("Authorization", "Bearer "+st.AdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Model string }
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.Model != name {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
}
