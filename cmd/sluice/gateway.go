package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openfaas/faas-provider"
	"github.com/openfaas/faas-provider/types"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/gateway"
)

func init() {
	commands["gateway"] = command{
		usage: `gateway [-f openfaas.yml] [--port 8080] [--dir .sluice/gateway]   a local OpenFaaS gateway: functions as processes`,
		run:   runGateway,
	}
}

// runGateway serves the OpenFaaS gateway API on --port (all interfaces, as
// faas-provider listens) with basic auth, the credentials in
// <dir>/auth/basic-auth-{user,password}. Run it beside the stack file.
func runGateway(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	stackFile := fs.String("f", "openfaas.yml", "stack file; the gateway runs its functions only")
	port := fs.Int("port", 8080, "port for the gateway API and /function/<name>")
	dir := fs.String("dir", filepath.Join(".sluice", "gateway"), "state: build contexts, binaries, secrets, logs")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	p, err := gateway.New(*stackFile, *dir, e.log)
	if err != nil {
		return err
	}
	defer p.Close()
	auth := filepath.Join(*dir, "auth")
	if err := os.MkdirAll(auth, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(auth, "basic-auth-user"), []byte("admin"), 0o600); err != nil {
		return err
	}
	if _, err := devstack.LoadOrCreateSecret(filepath.Join(auth, "basic-auth-password")); err != nil {
		return err
	}
	// Streamed completions run up to server.request_timeout (5m).
	cfg := types.FaaSConfig{TCPPort: port, ReadTimeout: time.Minute, WriteTimeout: 6 * time.Minute,
		EnableHealth: true, EnableBasicAuth: true, SecretMountPath: auth}
	fmt.Fprintf(e.stdout, "Sluice gateway at http://127.0.0.1:%d (user admin, password in %s)\n",
		*port, filepath.Join(auth, "basic-auth-password"))
	bootstrap.Serve(ctx, p.Handlers(cfg), &cfg)
	return nil
}
