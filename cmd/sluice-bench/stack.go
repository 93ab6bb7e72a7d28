package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/config"
)

// startStack runs a Sluice stack with its worker in this process, logging to
// dir/sluice.log; stop shuts it down (waiting up to 45 s).
// tweak, if given, adjusts the options before the start (a shared key
// pepper, no worker).
func startStack(ctx context.Context, dir, yml, dbURL, redisURL string, progress func(string, ...any), tweak ...func(*devstack.Options)) (*devstack.Stack, func(), error) {
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		return nil, nil, err
	}
	cfg.Env = config.Env{DatabaseURL: dbURL, RedisURL: redisURL, KeyPepper: scratch.RandHex(32),
		WebhookSecret: scratch.RandHex(32), Addr: "127.0.0.1:0", WorkerName: "bench-worker-" + filepath.Base(dir)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logf.Close()
		return nil, nil, err
	}
	stackCtx, stopStack := context.WithCancel(ctx)
	do := devstack.Options{Config: cfg, Log: slog.New(slog.NewJSONHandler(logf, nil)), Dir: filepath.Join(dir, "state")}
	for _, t := range tweak {
		t(&do)
	}
	st, err := devstack.Start(stackCtx, do, ln)
	if err != nil {
		stopStack()
		ln.Close()
		logf.Close()
		return nil, nil, err
	}
	stop := func() {
		stopStack()
		stopped := make(chan error, 1)
		go func() { stopped <- st.Wait() }()
		select {
		case <-stopped:
		case <-time.After(45 * time.Second):
			progress("the stack in %s did not stop within 45s", dir)
		}
		logf.Close()
	}
	return st, stop, nil
}

// otlpSink is a stand-in OTLP/HTTP collector that accepts and discards
// trace exports, so tracing's cost on the request path is measured without
// a collector's.
func otlpSink() (*http.Server, *atomic.Int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	var n atomic.Int64
	srv := &http.Server{Addr: ln.Addr().String(), ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) //nolint:errcheck
			n.Add(1)
			w.Header().Set("Content-Type", "application/x-protobuf")
			w.WriteHeader(http.StatusOK)
		})}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "otlp sink:", err)
		}
	}()
	return srv, &n, nil
}

// scratchRun is a run's own temporary folder, PostgreSQL database and
// (flushed) Redis database, shared by the bench modes that start a stack.
type scratchRun struct {
	dir, dbURL, redisURL string
	rdb                  redis.UniversalClient
	cleanups             []func()
}

// newScratchRun creates them; close removes them (keeping the folder with
// -keep).
func newScratchRun(ctx context.Context, o options, prefix string, progress func(string, ...any)) (r *scratchRun, err error) {
	r = &scratchRun{}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", prefix); err != nil {
		return nil, err
	}
	r.cleanups = append(r.cleanups, func() {
		if o.keep {
			progress("kept %s", r.dir)
			return
		}
		os.RemoveAll(r.dir)
	})
	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "BENCH_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, "sluice_bench_")
	if err != nil {
		return nil, err
	}
	r.dbURL = dbURL
	r.cleanups = append(r.cleanups, dropDB)
	if r.redisURL, err = scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), o.redisDB); err != nil {
		return nil, err
	}
	if r.rdb, err = scratch.FlushRedis(ctx, r.redisURL); err != nil {
		return nil, err
	}
	r.cleanups = append(r.cleanups, func() {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer fcancel()
		scratch.Flush(fctx, r.rdb) //nolint:errcheck
		r.rdb.Close()
	})
	return r, nil
}

func (r *scratchRun) close() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}
