package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openfaas/faas-provider/types"
	sdk "github.com/openfaas/go-sdk"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/gateway"
	"github.com/sluice-ai/sluice/internal/shrinkwrap"
)

// TestGatewayDeploysFunctionsAsProcesses runs the real `sluice gateway` beside
// openfaas.yml and drives it with go-sdk's client, which speaks faas-cli's
// API: secrets, deploy, list, describe, invoke and remove for all four
// functions. The worker and the simulator come from `sluice dev` on the same
// PostgreSQL schema and Redis, so submit's jobs are served for real.
func TestGatewayDeploysFunctionsAsProcesses(t *testing.T) {
	t.Parallel()
	st := startStack(t, "")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := sluiceBinary(t)
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "gateway")
	gw := exec.Command(bin, "gateway", "-f", "openfaas.yml", "--port", strconv.Itoa(port), "--dir", state)
	gw.Dir = root
	var logs strings.Builder
	gw.Stdout, gw.Stderr = &logs, &logs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gw.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		done := make(chan error, 1)
		go func() { done <- gw.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			gw.Process.Kill() //nolint:errcheck
			t.Errorf("gateway did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, base+"/healthz")
	password, err := os.ReadFile(filepath.Join(state, "auth", "basic-auth-password"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(base)
	client := sdk.NewClient(u, &sdk.BasicAuth{Username: "admin", Password: strings.TrimSpace(string(password))}, http.DefaultClient)
	ctx := t.Context()

	// Unauthenticated calls to the system API are refused.
	if _, err := sdk.NewClient(u, nil, http.DefaultClient).GetFunctions(ctx, ""); err == nil {
		t.Error("GET /system/functions without credentials succeeded")
	}

	for name, value := range map[string]string{"sluice-key-pepper": st.env["SLUICE_KEY_PEPPER"],
		"sluice-webhook-secret": st.env["SLUICE_WEBHOOK_SECRET"], "stripe-secret-key": "sk_test_unused",
		"stripe-webhook-secret": "whsec_unused"} {
		if _, err := client.CreateSecret(ctx, types.Secret{Name: name, Value: value}); err != nil {
			t.Fatalf("create secret %s: %v", name, err)
		}
	}

	// Deploy as faas-cli would from openfaas.yml, with this test's database,
	// Redis and configuration in the environment.
	s, err := shrinkwrap.Load(filepath.Join(root, "openfaas.yml"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"auth", "billing-webhook", "submit", "usage-rollup"}
	const rollupToken = "rt-gateway-test-0123456789abcdef"
	for _, name := range names {
		f, ok := s.Functions[name]
		if !ok {
			t.Fatalf("openfaas.yml has no %s", name)
		}
		env := maps.Clone(f.Environment)
		for _, k := range []string{"DATABASE_URL", "REDIS_URL", "SLUICE_CONFIG"} {
			env[k] = st.env[k]
		}
		if name == "usage-rollup" {
			// The trigger refuses anonymous callers: this test is the
			// scheduler, with the rollup token (a secret in production).
			env["SLUICE_ROLLUP_TOKEN"] = rollupToken
		}
		spec := types.FunctionDeployment{Service: name, Image: f.Image, EnvVars: env, Secrets: f.Secrets,
			Labels: f.Labels, Annotations: f.Annotations}
		start := time.Now()
		if _, err := client.Deploy(ctx, spec); err != nil {
			t.Fatalf("deploy %s: %v", name, err)
		}
		t.Logf("deployed %s (shrinkwrap, build, start) in %v", name, time.Since(start).Round(time.Millisecond))
	}

	// List: four functions, each its own live process.
	fns, err := client.GetFunctions(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, f := range fns {
		pid, err := strconv.Atoi((*f.Annotations)[gateway.PIDAnnotation])
		if err != nil || pid == gw.Process.Pid || pid == os.Getpid() || f.AvailableReplicas != 1 {
			t.Errorf("%s: pid %q, %d available", f.Name, (*f.Annotations)[gateway.PIDAnnotation], f.AvailableReplicas)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("%s: process %d: %v", f.Name, pid, err)
		}
		pids[f.Name] = pid
	}
	if len(pids) != len(names) {
		t.Fatalf("listed %v, want %v", pids, names)
	}
	seen := map[int]bool{}
	for _, p := range pids {
		seen[p] = true
	}
	if len(seen) != len(names) {
		t.Errorf("pids %v: want one process per function", pids)
	}
	t.Logf("processes: %v (gateway %d)", pids, gw.Process.Pid)

	// Only the stack's functions run, and only with secrets that exist.
	if _, err := client.Deploy(ctx, types.FunctionDeployment{Service: "not-in-stack", Image: "x"}); err == nil {
		t.Error("deployed a function that is not in openfaas.yml")
	}
	if _, err := client.Deploy(ctx, types.FunctionDeployment{Service: "auth", Image: "x", Secrets: []string{"missing"}}); err == nil {
		t.Error("deployed with a secret that does not exist")
	}
	// faas-cli deploy of a deployed function is a PUT: a new process
	// replaces the old one.
	bw, _ := client.GetFunction(ctx, "billing-webhook", "")
	if _, err := client.Update(ctx, types.FunctionDeployment{Service: "billing-webhook", Image: bw.Image,
		EnvVars: bw.EnvVars, Secrets: bw.Secrets, Labels: bw.Labels}); err != nil {
		t.Fatalf("update billing-webhook: %v", err)
	}
	if err := syscall.Kill(pids["billing-webhook"], 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("billing-webhook's old process %d survived the update (%v)", pids["billing-webhook"], err)
	}
	bw, _ = client.GetFunction(ctx, "billing-webhook", "")
	if pids["billing-webhook"], err = strconv.Atoi((*bw.Annotations)[gateway.PIDAnnotation]); err != nil {
		t.Fatal(err)
	}
	desc, err := client.GetFunction(ctx, "submit", "")
	if err != nil || desc.Name != "submit" || (*desc.Labels)["com.openfaas.scale.min"] != "3" {
		t.Errorf("describe submit: %+v, %v", desc, err)
	}

	// Invoke each through /function/<name>: every answer comes from the
	// function's own handler (OpenAI-shaped), not from the gateway.
	wantStatus := map[string]int{"auth": http.StatusNotFound, "billing-webhook": http.StatusNotFound,
		"submit": http.StatusNotFound, "usage-rollup": http.StatusOK}
	for _, name := range names {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base, strings.NewReader(""))
		if name == "usage-rollup" {
			req.Header.Set("Authorization", "Bearer "+rollupToken)
		}
		resp, err := client.InvokeFunction(name, "", false, false, req)
		if err != nil {
			t.Fatalf("invoke %s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus[name] || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("invoke %s: %d %s, want %d from the function", name, resp.StatusCode, body, wantStatus[name])
		}
		if name == "usage-rollup" {
			var rep struct {
				Object string `json:"object"`
			}
			if json.Unmarshal(body, &rep); rep.Object != "usage.rollup_run" {
				t.Errorf("usage-rollup scheduled run: %s", body)
			}
		}
	}

	// A chat completion through the gateway, plain and streamed.
	oc := openai.NewClient(option.WithBaseURL(base+"/function/submit/v1"), option.WithAPIKey(st.key), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: st.models[0], MaxTokens: openai.Int(5),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello through the gateway")}}
	comp, err := oc.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatalf("chat completion through /function/submit: %v", err)
	}
	if len(comp.Choices) != 1 || comp.Choices[0].Message.Content == "" || comp.Usage.CompletionTokens == 0 {
		t.Errorf("completion: %+v", comp)
	}
	stream := oc.Chat.Completions.NewStreaming(ctx, params)
	chunks := 0
	for stream.Next() {
		chunks++
	}
	if err := stream.Err(); err != nil || chunks < 2 {
		t.Errorf("streamed through the gateway: %d chunks, %v", chunks, err)
	}
	t.Logf("chat completion via /function/submit/v1: %q (%d completion tokens); streamed: %d chunks",
		comp.Choices[0].Message.Content, comp.Usage.CompletionTokens, chunks)

	// Remove: each process is gone and the list is empty.
	for _, name := range names {
		if err := client.DeleteFunction(ctx, name, ""); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
		if err := syscall.Kill(pids[name], 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: process %d still exists after remove (%v)", name, pids[name], err)
		}
	}
	if fns, err := client.GetFunctions(ctx, ""); err != nil || len(fns) != 0 {
		t.Errorf("after remove: %+v, %v", fns, err)
	}
	t.Logf("removed all four; processes %v gone (kill -0: ESRCH)", pids)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base, nil)
	if resp, err := client.InvokeFunction("submit", "", false, false, req); err == nil {
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Errorf("invoke after remove: %d", resp.StatusCode)
		}
	}
}

func waitHTTP(t *testing.T, u string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", u, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
