package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/shrinkwrap"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// TestUnderRuntimeInterfaceEmulator runs the adapter as Lambda would, as the
// bootstrap of aws-lambda-rie, against a real stack (PostgreSQL schema, Redis,
// worker and simulator from internal/devstack): submit answers a chat
// completion from a Function URL event (streamed through the emulator), and
// usage-rollup runs from an EventBridge scheduled event.
// TestMain stops the private PostgreSQL server the emulator test starts.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestUnderRuntimeInterfaceEmulator(t *testing.T) {
	t.Parallel()
	rie := os.Getenv("SLUICE_RIE")
	if rie == "" {
		rie = filepath.Join("..", "..", "bin", "aws-lambda-rie")
	}
	if _, err := os.Stat(rie); err != nil {
		t.Skipf("aws-lambda-rie not built (make rie): %v", err)
	}
	rie, _ = filepath.Abs(rie)
	sim := testenv.Sim(t)
	dir := t.TempDir()
	model := testenv.Name("lambda-chat")
	// The local stack runs the rollup on its own timer (usage_rollup.schedule,
	// default 1m): left at that, it folded one of the two rows between the
	// scheduled Lambda runs below, which then counted only the other. Only
	// the Lambda runs fold here.
	yaml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: 4\n      max_model_len: 512\npricing: {}\n"+
		"usage_rollup: {schedule: 24h}\n", model)
	cfgPath := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// A private PostgreSQL server, not the shared one: the scheduled run
	// folds only rows below the server-wide xid horizon, and on the shared
	// server any other suite's long transaction (make test runs two at
	// once) held it back past every bound.
	dbURL, _ := pgtest.Replica(t).NewURLs(t)
	env := map[string]string{"DATABASE_URL": dbURL, "REDIS_URL": testenv.RedisURL(),
		"SLUICE_KEY_PEPPER": testenv.Pepper, "SLUICE_CONFIG": cfgPath}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.Addr = "127.0.0.1:" + strconv.Itoa(port)
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, Log: slog.New(slog.DiscardHandler),
		Dir: filepath.Join(dir, "state"), SimBin: sim}, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); st.Wait() }) //nolint:errcheck

	bootstrap := filepath.Join(dir, "bootstrap")
	if err := shrinkwrap.BuildCached(t.Context(), ".", bootstrap, ".", append([]string{"-tags", "lambda.norpc"}, shrinkwrap.BuildFlags...)...); err != nil {
		t.Fatal(err)
	}

	submit := startRIE(t, rie, bootstrap, env, "submit", "url")
	body, _ := json.Marshal(map[string]any{"model": model, "max_tokens": 6, "ignore_eos": true, "stream": true,
		"stream_options": map[string]any{"include_usage": true},
		"messages":       []map[string]string{{"role": "user", "content": "Hello from Lambda"}}})
	event, _ := json.Marshal(map[string]any{
		"version": "2.0", "rawPath": "/v1/chat/completions", "rawQueryString": "",
		"headers": map[string]string{"authorization": "Bearer " + st.AdminKey, "content-type": "application/json"},
		"requestContext": map[string]any{"domainName": "abc.lambda-url.us-east-1.on.aws",
			"http": map[string]string{"method": "POST", "path": "/v1/chat/completions", "sourceIp": "203.0.113.7"}},
		"body": string(body), "isBase64Encoded": false,
	})
	out := invoke(t, submit, event)
	// A streamed response: the HTTP integration prelude, eight NULs, then
	// the function's bytes.
	prelude, stream, ok := bytes.Cut(out, make([]byte, 8))
	if !ok {
		t.Fatalf("no streaming prelude in %q", out)
	}
	var head struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(prelude, &head); err != nil || head.StatusCode != http.StatusOK ||
		!strings.HasPrefix(head.Headers["Content-Type"], "text/event-stream") {
		t.Fatalf("prelude %s (%v)", prelude, err)
	}
	var content strings.Builder
	completion := int64(0)
	for _, line := range strings.Split(string(stream), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		for _, c := range chunk.Choices {
			content.WriteString(c.Delta.Content)
		}
		if chunk.Usage != nil {
			completion = chunk.Usage.CompletionTokens
		}
	}
	if content.Len() == 0 || completion != 6 || !strings.Contains(string(stream), "data: [DONE]") {
		t.Fatalf("stream: content %q, %d completion tokens, want 6 and [DONE]:\n%s", content.String(), completion, stream)
	}
	t.Logf("Function URL (RESPONSE_STREAM) under aws-lambda-rie: status %d, %s, content %q, %d completion tokens",
		head.StatusCode, head.Headers["Content-Type"], content.String(), completion)

	// The same function behind API Gateway's HTTP API: buffered.
	apigw := startRIE(t, rie, bootstrap, env, "submit", "apigw")
	body, _ = json.Marshal(map[string]any{"model": model, "max_tokens": 4, "ignore_eos": true,
		"messages": []map[string]string{{"role": "user", "content": "Hello from API Gateway"}}})
	var e map[string]any
	json.Unmarshal(event, &e) //nolint:errcheck // built above
	e["body"] = string(body)
	event, _ = json.Marshal(e)
	var resp struct {
		StatusCode int    `json:"statusCode"`
		Body       string `json:"body"`
	}
	if out := invoke(t, apigw, event); json.Unmarshal(out, &resp) != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("API Gateway v2 response: %s", out)
	}
	var comp struct {
		Object string `json:"object"`
		Usage  struct {
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &comp); err != nil || comp.Object != "chat.completion" || comp.Usage.CompletionTokens != 4 {
		t.Fatalf("API Gateway v2 completion: %s (%v)", resp.Body, err)
	}

	// The scheduled run sees both completions' usage rows once the worker's
	// batch has written them.
	rollup := startRIE(t, rie, bootstrap, env, "usage-rollup", "url")
	scheduled := []byte(`{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"Scheduled Event",
		"source":"aws.events","account":"123456789012","time":"2026-11-25T19:00:00Z","region":"us-east-1",
		"resources":["arn:aws:events:us-east-1:123456789012:rule/usage-rollup"],"detail":{}}`)
	// Each run folds what is new since its watermark: the two completions
	// may arrive over several runs; together they fold exactly two. A run
	// folds only rows below the instance-wide xid horizon, so any other
	// test's open transaction on the shared server holds a row back (make
	// test runs two suites at once): the bound is generous, and a failure
	// names the transactions in the way.
	deadline := time.Now().Add(120 * time.Second)
	var folded, tokens int64
	for {
		var rep struct {
			Object string `json:"object"`
			Folded struct {
				Requests         int64 `json:"requests"`
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"folded"`
			Reconcile struct {
				OK bool `json:"ok"`
			} `json:"reconcile"`
		}
		out := invoke(t, rollup, scheduled)
		if err := json.Unmarshal(out, &rep); err != nil || rep.Object != "usage.rollup_run" {
			t.Fatalf("scheduled run: %s (%v)", out, err)
		}
		if rep.Folded.Requests > 0 && !rep.Reconcile.OK {
			t.Errorf("scheduled run: rollups and raw usage differ: %s", out)
		}
		folded += rep.Folded.Requests
		tokens += rep.Folded.PromptTokens + rep.Folded.CompletionTokens
		if folded >= 2 {
			if folded != 2 || tokens < 10 {
				t.Errorf("scheduled runs folded %d requests, %d tokens; want the two completions", folded, tokens)
			}
			t.Logf("scheduled run (EventBridge event): %s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scheduled runs never folded the two usage rows: %d so far; open transactions: %s", folded, openTransactions(env["DATABASE_URL"]))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startRIE runs aws-lambda-rie with the adapter as its bootstrap, serving fn,
// and returns the invocation URL.
func startRIE(t *testing.T, rie, bootstrap string, env map[string]string, fn, mode string) string {
	t.Helper()
	addr, api := freeAddr(t), freeAddr(t) // the runtime API defaults to :9001: one emulator per machine
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", addr, "--runtime-api-address", api, bootstrap)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SLUICE_FUNCTION=" + fn, "SLUICE_LAMBDA_MODE=" + mode}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck
		cmd.Wait()         //nolint:errcheck
		if t.Failed() {
			t.Logf("aws-lambda-rie (%s):\n%s", fn, logs.String())
		}
	})
	return "http://" + addr + "/2015-03-31/functions/function/invocations"
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

func invoke(t *testing.T, url string, event []byte) []byte {
	t.Helper()
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Post(url, "application/json", bytes.NewReader(event))
		if err != nil {
			lastErr = err // the emulator is still starting
			continue
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("invoke: %d %s (%v)", resp.StatusCode, out, err)
		}
		return out
	}
	t.Fatalf("emulator never answered: %v", lastErr)
	return nil
}

// openTransactions lists the server's transactions open for over five
// seconds (they hold the rollup's xid horizon back), for a failure message.
func openTransactions(dbURL string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT format('%s pid %s %s for %s: %s', datname, pid, state, now() - xact_start, left(query, 120))
		FROM pg_stat_activity WHERE xact_start < now() - interval '5 seconds' AND pid <> pg_backend_pid()`)
	if err != nil {
		return err.Error()
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(out)
}
