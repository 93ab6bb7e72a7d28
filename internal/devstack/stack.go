package devstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/batch/driver"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// Options configure a local stack.
type Options struct {
	Config   *config.Config
	Log      *slog.Logger
	Dir      string // state folder; default .sluice
	NoWorker bool   // serve the functions only
	SimBin   string // simulator binary; found automatically if empty
	SimArgs  []string
	Out      io.Writer // where the banner and the progress lines go
	// Telemetry adjusts the telemetry (tests pass an in-memory span exporter).
	Telemetry telemetry.Options
}

// Stack is a running local platform.
type Stack struct {
	Deps     *app.Deps
	Addr     string
	AdminKey string
	stops    []func()
	done     chan error
}

// Start brings the stack up on ln (or SLUICE_ADDR) and returns once it is
// ready; Wait blocks until ctx ends and everything has stopped. Each service
// is one step, in order: secrets, Redis, PostgreSQL, simulator engines, the
// connections and admin key, the background work, the HTTP server.
func Start(ctx context.Context, o Options, ln net.Listener) (*Stack, error) {
	if o.Dir == "" {
		o.Dir = ".sluice"
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	// One stack per state folder: a second one would start another
	// PostgreSQL on the same data directory and overwrite the first's files.
	lk, err := lock(dir)
	if err != nil {
		return nil, err
	}
	s := &Stack{done: make(chan error, 1)}
	s.stops = append(s.stops, func() { lk.Close() })
	st := &starting{o: o, ln: ln, state: State{PID: os.Getpid(), Dir: dir, AdminKeyFile: filepath.Join(dir, AdminKeyFile),
		StartedAt: time.Now().UTC()}}
	for _, step := range []func(context.Context, *starting) error{
		s.secrets, s.filesDir, s.redis, s.postgres, s.engines, s.open, s.run, s.serve,
	} {
		if err := step(ctx, st); err != nil {
			s.stop()
			return nil, err
		}
	}
	st.banner(s)
	return s, nil
}

// starting is what Start's steps share.
type starting struct {
	o      Options
	ln     net.Listener
	state  State // written once the server listens
	reused bool  // the admin key is the last start's
	runCtx context.Context
	wg     sync.WaitGroup // the background work and the server
}

func (st *starting) progress(format string, args ...any) {
	if st.o.Out != nil {
		fmt.Fprintf(st.o.Out, "sluice dev: "+format+"\n", args...)
	}
}

// secrets loads (or creates, on the first start) the key pepper and the
// webhook secret the environment does not set.
func (s *Stack) secrets(_ context.Context, st *starting) error {
	cfg := st.o.Config
	if cfg.Env.KeyPepper == "" {
		st.state.PepperFile = filepath.Join(st.state.Dir, PepperFile)
		p, err := LoadOrCreateSecret(st.state.PepperFile)
		if err != nil {
			return err
		}
		cfg.Env.KeyPepper = p
	}
	if cfg.Env.WebhookSecret == "" {
		p, err := LoadOrCreateSecret(filepath.Join(st.o.Dir, "webhook-secret"))
		if err != nil {
			return err
		}
		cfg.Env.WebhookSecret = p
	}
	return nil
}

// filesDir keeps uploaded files under the state folder when no object
// store is configured (batch.files_dir), so the quick start needs no MinIO.
func (s *Stack) filesDir(_ context.Context, st *starting) error {
	cfg := st.o.Config
	if cfg.Batch.FilesDir == "" && cfg.Storage.Endpoint == "" {
		cfg.Batch.FilesDir = filepath.Join(st.o.Dir, "files")
	}
	return nil
}

// redis starts an embedded Redis unless REDIS_URL names one.
func (s *Stack) redis(_ context.Context, st *starting) error {
	cfg := st.o.Config
	if cfg.Env.RedisURL == "" {
		url, stop, err := EmbeddedRedis()
		if err != nil {
			return err
		}
		s.stops = append(s.stops, stop)
		cfg.Env.RedisURL = url
		st.state.RedisEmbedded = true
		st.o.Log.Info("embedded Redis (in memory; set REDIS_URL for durability)", slog.String("url", url))
	}
	st.state.RedisURL, st.state.RedisRedacted = redact(cfg.Env.RedisURL)
	return nil
}

// postgres starts the embedded PostgreSQL under the state folder unless
// DATABASE_URL names one.
func (s *Stack) postgres(ctx context.Context, st *starting) error {
	cfg := st.o.Config
	if cfg.Env.DatabaseURL == "" {
		pg := filepath.Join(st.o.Dir, "pg")
		if _, err := os.Stat(filepath.Join(pg, "data", "PG_VERSION")); err != nil {
			st.progress("creating the embedded PostgreSQL cluster under %s (first start only, about 10 s)", pg)
		} else {
			st.progress("starting the embedded PostgreSQL under %s", pg)
		}
		url, stop, err := EmbeddedPostgres(ctx, pg)
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		s.stops = append(s.stops, stop)
		cfg.Env.DatabaseURL = url
		st.state.DatabaseEmbedded = true
		st.o.Log.Info("embedded PostgreSQL", slog.String("url", url), slog.String("dir", pg))
	}
	st.state.DatabaseURL, st.state.DatabaseRedacted = redact(cfg.Env.DatabaseURL)
	return nil
}

// engines starts a simulator engine for each model without endpoints
// (none with NoWorker).
func (s *Stack) engines(ctx context.Context, st *starting) error {
	if st.o.NoWorker {
		return nil
	}
	cfg := st.o.Config
	for i := range cfg.Inference.Models {
		m := &cfg.Inference.Models[i]
		if len(m.Endpoints) > 0 {
			continue
		}
		bin, err := SimBinary(st.o.SimBin)
		if err != nil {
			return err
		}
		st.progress("starting a simulator engine for %s", m.Name)
		sim, err := StartSim(ctx, bin, m.Name, m.MaxModelLen, m.MaxBatchSize,
			filepath.Join(st.o.Dir, "sim-"+m.Name+".log"), append(loraArgs(m), st.o.SimArgs...)...)
		if err != nil {
			return err
		}
		s.stops = append(s.stops, sim.Stop)
		m.Endpoints = []string{sim.URL}
		st.o.Log.Info("simulator engine started", slog.String("model", m.Name), slog.String("url", sim.URL))
	}
	return nil
}

// loraArgs are the simulator flags that serve m's LoRA adapters from the
// start, as vLLM's --lora-modules does, within m's max_loras.
func loraArgs(m *config.Model) []string {
	if len(m.Adapters) == 0 {
		return nil
	}
	args := []string{"--max-loras", strconv.Itoa(max(m.MaxLoRAs, len(m.Adapters))), "--lora-modules"}
	for _, a := range m.Adapters {
		b, _ := json.Marshal(map[string]string{"name": a.Name, "path": a.Source, "base_model_name": m.Name})
		args = append(args, string(b))
	}
	return args
}

// open connects to PostgreSQL and Redis (applying migrations) and provides
// the admin key.
func (s *Stack) open(ctx context.Context, st *starting) error {
	st.progress("connecting to PostgreSQL and Redis, applying migrations")
	d, err := app.OpenWith(ctx, st.o.Config, st.o.Log, st.o.Telemetry)
	if err != nil {
		return err
	}
	s.Deps = d
	s.stops = append(s.stops, d.Close)
	// One admin key per state folder, kept only in admin.key (0600): the
	// previous start's while it is live, else a new one replacing it.
	s.AdminKey, st.reused, err = adminKey(ctx, d, st.state.Dir)
	return err
}

// run starts the background work: the shared loops, usage-rollup on its
// schedule and, unless NoWorker, the GPU worker.
func (s *Stack) run(ctx context.Context, st *starting) error {
	cfg, d := st.o.Config, s.Deps
	runCtx, cancel := context.WithCancel(ctx)
	st.runCtx = runCtx
	s.stops = append([]func(){cancel}, s.stops...)
	d.Start(runCtx)
	// usage-rollup on its schedule, as cron-connector or EventBridge would.
	st.wg.Add(1)
	go func() { defer st.wg.Done(); rollup.Schedule(runCtx, rollup.DepsFrom(d)) }()
	if st.o.NoWorker {
		return nil
	}
	p, err := pool.New(pool.Deps{Config: cfg, Log: st.o.Log, Queue: d.Queue, Usage: d.DB, Name: cfg.Env.WorkerName,
		Telemetry: d.Telemetry, Objects: d.Objects})
	if err != nil {
		return err
	}
	st.wg.Add(1)
	go func() { defer st.wg.Done(); p.Run(runCtx) }() //nolint:errcheck
	// The batch driver runs beside the worker, as in gpuworker.
	st.wg.Add(1)
	go func() { defer st.wg.Done(); driver.FromDeps(d).Run(runCtx) }() //nolint:errcheck
	return nil
}

// serve listens (on SLUICE_ADDR unless given a listener), writes the state
// file the CLI finds the stack by and serves the gateway until ctx ends.
func (s *Stack) serve(ctx context.Context, st *starting) error {
	d, log, ln := s.Deps, st.o.Log, st.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", st.o.Config.Env.Addr); err != nil {
			return err
		}
	}
	s.Addr = ln.Addr().String()
	// So the CLI in another shell, anywhere in the checkout, finds this stack.
	st.state.URL = "http://" + s.Addr
	if err := writeState(st.state.Dir, st.state); err != nil {
		return err
	}
	s.stops = append(s.stops, func() { os.Remove(filepath.Join(st.state.Dir, StateFile)) })
	h := d.Serve(httpserve.Middleware(log, "gateway", Router(d), httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes())))
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		if err := httpserve.Serve(st.runCtx, ln, h, 10*time.Second); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server", slog.String("err", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		st.wg.Wait()
		s.stop()
		s.done <- nil
	}()
	return nil
}

// banner tells where the stack runs and how to try it.
func (st *starting) banner(s *Stack) {
	if st.o.Out == nil {
		return
	}
	fmt.Fprintf(st.o.Out, `
Sluice is running at http://%[1]s  (OpenAI base URL: http://%[1]s/v1)
Web console: http://%[1]s/console/  (operators: "Sign in with an API key", the admin key below)
Admin key %[4]s %[2]s
Try:
  curl http://%[1]s/v1/chat/completions \
    -H "Authorization: Bearer $(cat %[2]s)" -H 'Content-Type: application/json' \
    -d '{"model":"%[3]s","messages":[{"role":"user","content":"Hello"}]}'

`, s.Addr, filepath.Join(st.o.Dir, AdminKeyFile), st.o.Config.Inference.Models[0].Name,
		map[bool]string{true: "(kept from the last start) in", false: "written to"}[st.reused])
}

func (s *Stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// Wait blocks until the stack has stopped (after its context ended).
func (s *Stack) Wait() error { return <-s.done }

// CreateKey makes a new API key for a user and returns it; only its hash is stored.
func CreateKey(ctx context.Context, d *app.Deps, userID, name string) (string, error) {
	key, _, err := createKey(ctx, d, userID, name)
	return key, err
}

func createKey(ctx context.Context, d *app.Deps, userID, name string) (key, id string, err error) {
	key, err = apikey.New()
	if err != nil {
		return "", "", err
	}
	k, err := d.DB.CreateAPIKey(ctx, userID, name, apikey.Hash([]byte(d.Config.Env.KeyPepper), key), apikey.Display(key), nil)
	if err != nil {
		return "", "", err
	}
	return key, k.ID, nil
}
