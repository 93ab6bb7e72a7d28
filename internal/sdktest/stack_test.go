package sdktest

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
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// stack is one real local Sluice for a test: its base URL (ending /v1), the
// operator's admin key, and the models its config names.
type stack struct {
	Base  string
	Key   string
	Model string // the first model of the config
	Dev   *devstack.Stack
	logs  *syncBuffer
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

// Tail is the end of the stack's log (warnings and errors), for a failure.
func (s *stack) Tail() string {
	l := s.logs.String()
	if len(l) > 4000 {
		l = l[len(l)-4000:]
	}
	return l
}

// defaultYAML is a stack with one generate model, priced.
const defaultYAML = `
inference:
  models:
    - name: {{model}}
      max_batch_size: 8
      max_model_len: 1024
pricing:
  {{model}}:
    input_tokens: 0.0001
    output_tokens: 0.0002
`

// startStack starts a stack whose config is yaml, with {{model}} replaced by
// a fresh model name (and {{model2}}, {{model3}} by two more); the stack
// stops when the test ends.
func startStack(t *testing.T, yaml string) *stack {
	t.Helper()
	sim := testenv.Sim(t)
	dir := t.TempDir()
	model := testenv.Name("sdk")
	yaml = strings.NewReplacer("{{model}}", model, "{{model2}}", model+"-b", "{{model3}}", model+"-c").Replace(yaml)
	cfgPath := filepath.Join(dir, "sluice.yaml")
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
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
	return &stack{Base: "http://" + st.Addr + "/v1", Key: st.AdminKey, Model: model, Dev: st, logs: logs}
}

// client is openai-go on the stack with the admin key.
func (s *stack) client() openai.Client {
	return openai.NewClient(option.WithBaseURL(s.Base), option.WithAPIKey(s.Key), option.WithMaxRetries(0))
}

// do sends a request with the admin key and decodes a JSON answer into out
// (when not nil), returning the status.
func (s *stack) do(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, strings.TrimSuffix(s.Base, "/v1")+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// runNode runs node/<script> against the stack and returns its output; the
// script reads SLUICE_URL (ending /v1), SLUICE_KEY and MODEL, plus env.
// It fails the test when the script exits non-zero.
func runNode(t *testing.T, s *stack, script string, env ...string) string {
	t.Helper()
	if _, err := os.Stat("node/node_modules/openai"); err != nil {
		t.Fatalf("the npm openai package is not installed (make test runs npm ci in internal/sdktest/node): %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = "node"
	cmd.Env = append(append(os.Environ(), "SLUICE_URL="+s.Base, "SLUICE_KEY="+s.Key, "MODEL="+s.Model), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", script, out)
	if err != nil {
		t.Fatalf("node %s failed: %v\nstack log (warnings and errors):\n%s", script, err, s.Tail())
	}
	return string(out)
}

// nodeScripts lists node/*.test.mjs, so TestNodeSDK runs each script a
// feature adds without a line here.
func nodeScripts(t *testing.T) []string {
	m, err := filepath.Glob("node/*.test.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	sort.Strings(m)
	return m
}

// TestNodeSDK runs every node/*.test.mjs with the npm openai package against
// a stack of the default config (a script that needs more starts from
// the config in its first line's `// sluice.yaml:` comment, read here).
func TestNodeSDK(t *testing.T) {
	t.Parallel()
	scripts := nodeScripts(t)
	if len(scripts) == 0 {
		t.Fatal("no node/*.test.mjs scripts")
	}
	for _, sc := range scripts {
		t.Run(strings.TrimSuffix(sc, ".test.mjs"), func(t *testing.T) {
			t.Parallel()
			yaml := defaultYAML
			if y := scriptYAML(t, sc); y != "" {
				yaml = y
			}
			s := startStack(t, yaml)
			out := runNode(t, s, sc)
			if n := strings.Count(out, "ok - "); n == 0 {
				t.Fatalf("node %s printed no `ok - ` step", sc)
			}
			if strings.Contains(out, "not ok") {
				t.Fatalf("node %s has a failed step", sc)
			}
		})
	}
}

// scriptYAML reads a script's config from its leading comment block:
// lines `// sluice.yaml:` then `// ` + YAML until the first line that is not a
// comment.
func scriptYAML(t *testing.T, script string) string {
	b, err := os.ReadFile(filepath.Join("node", script))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) != "// sluice.yaml:" {
		return ""
	}
	var y strings.Builder
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "//") {
			break
		}
		y.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "//"), " "))
		y.WriteString("\n")
	}
	return y.String()
}

// TestGoSDKChat is the baseline the feature tests build on: openai-go's chat
// call against the stack.
func TestGoSDKChat(t *testing.T) {
	t.Parallel()
	s := startStack(t, defaultYAML)
	c := s.client()
	cc, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: s.Model, MaxTokens: openai.Int(8),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if cc.Usage.PromptTokens == 0 || len(cc.Choices) != 1 {
		t.Fatalf("chat answer: %+v", cc)
	}
	fmt.Printf("go sdk chat: prompt=%d completion=%d\n", cc.Usage.PromptTokens, cc.Usage.CompletionTokens)
}
