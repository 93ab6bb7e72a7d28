package devstack

import (
	"context"
	"errors"
	"fmt"
	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
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
// ready; Wait blocks until ctx ends and everything has stopped.
func Start(ctx context.Context, o Options, ln net.Listener) (*Stack, error) {
	cfg, log := o.Config, o.Log
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
	fail := func(err error) (*Stack, error) {
		s.stop()
		return nil, err
	}
	progress := func(format string, args ...any) {
		if o.Out != nil {
			fmt.Fprintf(o.Out, "sluice dev: "+format+"\n", args...)
		}
	}
	state := State{PID: os.Getpid(), Dir: dir, AdminKeyFile: filepath.Join(dir, AdminKeyFile), StartedAt: time.Now().UTC()}
	if cfg.Env.KeyPepper == "" {
		state.PepperFile = filepath.Join(dir, PepperFile)
		p, err := LoadOrCreateSecret(state.PepperFile)
		if err != nil {
			return fail(err)
		}
		cfg.Env.KeyPepper = p
	}
	if cfg.Env.WebhookSecret == "" {
		p, err := LoadOrCreateSecret(filepath.Join(o.Dir, "webhook-secret"))
		if err != nil {
			return fail(err)
		}
		cfg.Env.WebhookSecret = p
	}
	if cfg.Env.RedisURL == "" {
		url, stop, err := EmbeddedRedis()
		if err != nil {
			return fail(err)
		}
		s.stops = append(s.stops, stop)
		cfg.Env.RedisURL = url
		state.RedisEmbedded = true
		log.Info("embedded Redis (in memory; set REDIS_URL for durability)", slog.String("url", url))
	}
	if cfg.Env.DatabaseURL == "" {
		pg := filepath.Join(o.Dir, "pg")
		if _, err := os.Stat(filepath.Join(pg, "data", "PG_VERSION")); err != nil {
			progress("creating the embedded PostgreSQL cluster under %s (first start only, about 10 s)", pg)
		} else {
			progress("starting the embedded PostgreSQL under %s", pg)
		}
		url, stop, err := EmbeddedPostgres(ctx, pg)
		if err != nil {
			return fail(fmt.Errorf("embedded PostgreSQL: %w", err))
		}
		s.stops = append(s.stops, stop)
		cfg.Env.DatabaseURL = url
		state.DatabaseEmbedded = true
		log.Info("embedded PostgreSQL", slog.String("url", url), slog.String("dir", pg))
	}
	state.DatabaseURL, state.DatabaseRedacted = redact(cfg.Env.DatabaseURL)
	state.RedisURL, state.RedisRedacted = redact(cfg.Env.RedisURL)
	if !o.NoWorker {
		for i := range cfg.Inference.Models {
			m := &cfg.Inference.Models[i]
			if len(m.Endpoints) > 0 {
				continue
			}
			bin, err := SimBinary(o.SimBin)
			if err != nil {
				return fail(err)
			}
			progress("starting a simulator engine for %s", m.Name)
			sim, err := StartSim(ctx, bin, m.Name, m.MaxModelLen, m.MaxBatchSize,
				filepath.Join(o.Dir, "sim-"+m.Name+".log"), o.SimArgs...)
			if err != nil {
				return fail(err)
			}
			s.stops = append(s.stops, sim.Stop)
			m.Endpoints = []string{sim.URL}
			log.Info("simulator engine started", slog.String("model", m.Name), slog.String("url", sim.URL))
		}
	}
	progress("connecting to PostgreSQL and Redis, applying migrations")
	d, err := app.OpenWith(ctx, cfg, log, o.Telemetry)
	if err != nil {
		return fail(err)
	}
	s.Deps = d
	s.stops = append(s.stops, d.Close)

	// One admin key per state folder, kept only in admin.key (0600): the
	// previous start's while it is live, else a new one replacing it.
	key, reused, err := adminKey(ctx, d, dir)
	if err != nil {
		return fail(err)
	}
	s.AdminKey = key

	runCtx, cancel := context.WithCancel(ctx)
	s.stops = append([]func(){cancel}, s.stops...)
	d.Start(runCtx)
	var wg sync.WaitGroup
	// usage-rollup on its schedule, as cron-connector or EventBridge would.
	wg.Add(1)
	go func() { defer wg.Done(); rollup.Schedule(runCtx, rollup.DepsFrom(d)) }()
	if !o.NoWorker {
		p, err := pool.New(pool.Deps{Config: cfg, Log: log, Queue: d.Queue, Usage: d.DB, Name: cfg.Env.WorkerName,
			Telemetry: d.Telemetry, Objects: d.Objects})
		if err != nil {
			return fail(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.Run(runCtx) }() //nolint:errcheck
	}
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Env.Addr)
		if err != nil {
			return fail(err)
		}
	}
	s.Addr = ln.Addr().String()
	// So the CLI in another shell, anywhere in the checkout, finds this stack.
	state.URL = "http://" + s.Addr
	if err := writeState(dir, state); err != nil {
		return fail(err)
	}
	s.stops = append(s.stops, func() { os.Remove(filepath.Join(dir, StateFile)) })
	h := d.Serve(httpserve.Middleware(log, "gateway", Router(d), httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes())))
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := httpserve.Serve(runCtx, ln, h, 10*time.Second); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server", slog.String("err", err.Error()))
		}
	}()
	go func() {
		<-ctx.Done()
		wg.Wait()
		s.stop()
		s.done <- nil
	}()
	if o.Out != nil {
		fmt.Fprintf(o.Out, `
Sluice is running at http://%[1]s  (OpenAI base URL: http://%[1]s/v1)
Web console: http://%[1]s/console/  (operators: "Sign in with an API key", the admin key below)
Admin key %[4]s %[2]s
Try:
  curl http://%[1]s/v1/chat/completions \
    -H "Authorization: Bearer $(cat %[2]s)" -H 'Content-Type: application/json' \
    -d '{"model":"%[3]s","messages":[{"role":"user","content":"Hello"}]}'

`, s.Addr, filepath.Join(o.Dir, AdminKeyFile), cfg.Inference.Models[0].Name, map[bool]string{true: "(kept from the last start) in", false: "written to"}[reused])
	}
	return s, nil
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
