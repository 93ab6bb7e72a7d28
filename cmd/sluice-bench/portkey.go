package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
)

// defaultPortkey is where `make bench-deps` installs the pinned Portkey
// gateway (cmd/sluice-bench/portkey/package.json), relative to the
// repository root that make runs the bench from.
const defaultPortkey = "cmd/sluice-bench/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"

// portkey is a running Portkey gateway: the peer the overhead bench puts in
// front of the same simulator, a stateless proxy doing none of Sluice's
// work (no keys, limits, holds, queue or metering), to show what a gateway
// costs before that work.
type portkey struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startPortkey runs the gateway's Node server on a free port, logging to
// dir, and waits until it answers.
func startPortkey(ctx context.Context, script, dir string) (*portkey, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node not found: %w", err)
	}
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("%s: %w (make bench-deps installs it)", script, err)
	}
	port, err := devstack.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "portkey.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(node, script, "--port="+strconv.Itoa(port), "--headless")
	// Production mode: no per-request console logging, as a deployed
	// gateway would run.
	cmd.Env = append(os.Environ(), "NODE_ENV=production")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &portkey{url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }() //nolint:errcheck // its exit is seen through done
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case <-p.done:
			return nil, errors.New("portkey gateway exited at start; see portkey.log")
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, errors.New("portkey gateway did not start listening within 30 s")
		}
	}
}

// target is the phase that sends the bench's requests through the gateway
// to engineBase (the simulator's OpenAI-compatible base, ending in /v1), as
// Portkey's documented custom-host routing does.
func (p *portkey) target(engineBase string) target {
	return target{name: "through Portkey gateway", url: p.url + "/v1/chat/completions", auth: "Bearer unused",
		headers: http.Header{"X-Portkey-Provider": {"openai"}, "X-Portkey-Custom-Host": {engineBase}}}
}

func (p *portkey) stop() {
	p.cmd.Process.Kill() //nolint:errcheck // already gone is fine
	<-p.done
}
