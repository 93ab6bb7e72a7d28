package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
)

// PrefixCacheSim starts a simulator engine for model (max_model_len 1024,
// 8 sequences) with its prefix cache modelled: --enable-kvcache, so a
// prompt that repeats an earlier one's 16-token blocks is partly served
// from cache and its usage reports prompt_tokens_details.cached_tokens. The
// simulator refuses that flag without POD_IP in its environment (its
// KV-event topic names the pod), so it is given one. It returns the
// engine's URL; the engine stops when the test ends.
func PrefixCacheSim(tb testing.TB, model string) string {
	tb.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(Sim(tb), "--port", strconv.Itoa(port), "--model", model, "--force-dummy-tokenizer",
		"--max-model-len", "1024", "--max-num-seqs", "8", "--enable-kvcache", "--kv-cache-size", "256", "--block-size", "16")
	cmd.Env = append(os.Environ(), "POD_IP=127.0.0.1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) //nolint:errcheck // stopping it
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("simulator with --enable-kvcache did not become healthy")
		}
	}
}
