// Package app wires the dependencies every function and the worker share:
// configuration, PostgreSQL, Redis, the queue and the verifier. It is the one
// place that turns configuration into live connections.
package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rconn"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// Deps are a function's or the worker's live dependencies.
type Deps struct {
	Config *config.Config
	Log    *slog.Logger
	DB     *postgres.DB
	// ReadDB serves the report reads only (usage, statements, invoices,
	// revenue, business metrics): from the read replica (DATABASE_READ_URL)
	// while it is up and within database.read_max_lag, else from DB. Keys,
	// users and balances are read from DB.
	ReadDB   *postgres.Reports
	Redis    redis.UniversalClient
	Queue    *redisq.Queue
	Verifier *authn.Verifier
	// Telemetry is the process's metrics and tracer; nil with both off.
	Telemetry *telemetry.Telemetry
	// Admission holds limits and funds; its settler runs from Start.
	Admission *admission.Admitter
	// Objects keeps large job results and async inputs in the object store;
	// nil with storage.jobs.enabled off.
	Objects *objstore.Jobs
}

// Role is what a process does; it decides what Open connects and starts.
type Role int

const (
	// Function serves API requests: everything, the key verifier included.
	Function Role = iota
	// Worker is the GPU worker: the stores, the queue, admission's settler
	// and telemetry; no verifier, so no SLUICE_KEY_PEPPER.
	Worker
)

// Open connects to PostgreSQL and Redis as cfg.Env says, applies migrations
// and builds a function's services. Background work starts with Start.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Deps, error) {
	return OpenRole(ctx, cfg, log, Function, telemetry.Options{})
}

// OpenWith is Open with telemetry options (tests pass an in-memory span
// exporter).
func OpenWith(ctx context.Context, cfg *config.Config, log *slog.Logger, topts telemetry.Options) (*Deps, error) {
	return OpenRole(ctx, cfg, log, Function, topts)
}

// OpenRole opens what a process of the role uses, and no more.
func OpenRole(ctx context.Context, cfg *config.Config, log *slog.Logger, role Role, topts telemetry.Options) (*Deps, error) {
	validate := cfg.Env.ValidateEnv
	if role == Worker {
		validate = cfg.Env.ValidateWorkerEnv
	}
	if err := validate(); err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, cfg.Env.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	var replica *postgres.DB // not connected yet: a replica that is down must not stop the start
	if cfg.Env.DatabaseReadURL != "" {
		if replica, err = postgres.OpenReplica(cfg.Env.DatabaseReadURL); err != nil {
			db.Close()
			return nil, err
		}
	}
	dbc := cfg.Database
	readDB := postgres.NewReports(db, replica, postgres.ReplicaOptions{MaxLag: dbc.ReadMaxLag,
		CheckInterval: dbc.ReadCheckInterval, CheckTimeout: dbc.ReadCheckTimeout}, log)
	rdb, err := OpenRedis(ctx, cfg.Env.RedisURL)
	if err != nil {
		readDB.Close()
		db.Close()
		return nil, err
	}
	d := &Deps{
		Config:    cfg,
		Log:       log,
		DB:        db,
		ReadDB:    readDB,
		Redis:     rdb,
		Queue:     NewQueue(cfg, rdb),
		Admission: admission.New(cfg, rdb, db, log),
		Objects:   objstore.NewJobs(cfg),
	}
	d.Admission.Durable(d.Queue.Durable())
	if role == Function {
		d.Verifier = NewVerifier(cfg, db, log)
	}
	if d.Objects != nil {
		// Not fatal: the store may still be starting (compose). Until it
		// answers, large results are retried by the queue and large async
		// inputs are refused with 503.
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := d.Objects.EnsureBucket(bctx); err != nil {
			log.WarnContext(ctx, "object store not ready for job payloads", slog.String("err", err.Error()))
		}
		cancel()
	}
	if d.Telemetry, err = openTelemetry(ctx, d, topts); err != nil {
		rdb.Close()
		readDB.Close()
		db.Close()
		return nil, err
	}
	if d.Telemetry != nil {
		d.Admission.Observe(d.Telemetry)
	}
	return d, nil
}

// NewVerifier builds the shared verifier: API keys (under the current and
// any previous pepper), the auth function's session tokens and, when
// configured, an external OpenID provider's access tokens.
func NewVerifier(cfg *config.Config, db *postgres.DB, log *slog.Logger) *authn.Verifier {
	id := cfg.Auth.Identity
	opts := []authn.Option{authn.WithPreviousPepper([]byte(cfg.Env.KeyPepperPrevious)), authn.WithPaymentGrace(cfg.Billing.PaymentGrace),
		authn.WithTokens(authn.TokenConfig{Issuer: id.Issuer, Audience: id.Audience, AccessTTL: id.AccessTTL, Leeway: id.Leeway})}
	if o := id.OIDC; o.Issuer != "" {
		opts = append(opts, authn.WithOIDC(authn.OIDCConfig{Issuer: o.Issuer, Audience: o.Audience, ClientID: o.ClientID,
			Roles: o.Roles, RoleOrder: cfg.Auth.RBAC.Roles, DefaultRole: o.DefaultRole, Leeway: id.Leeway}, db))
	}
	return authn.New(db, []byte(cfg.Env.KeyPepper), cfg.Server.KeyCacheTTL, log, opts...)
}

// NewQueue builds the queue with the configured limits and durable writes
// (redis.wait_replicas).
func NewQueue(cfg *config.Config, rdb redis.UniversalClient) *redisq.Queue {
	return redisq.New(rdb, redisq.Options{ResultTTL: cfg.Jobs.ResultTTL, SyncRetention: cfg.Jobs.SyncRetention, MaxAttempts: cfg.Jobs.MaxAttempts,
		MaxQueue: cfg.Jobs.MaxQueue, Shards: cfg.Jobs.Shards, EncodeError: openai.EncodeError,
		Durable: redisq.NewDurable(rdb, cfg.Redis.WaitReplicas, cfg.Redis.WaitTimeout, slog.Default())})
}

// OpenRedis connects to REDIS_URL: one server or a Redis Cluster (see
// rconn). The pool bounds a process's connections to each Redis server.
// Waiting requests hold none of them beyond redisq's WaitDirect +
// WaitReaders (48; they share subscriptions, redisq/wait.go), and a worker
// blocks one per model it serves on its bell; 256 leaves ample room for
// those and every other command. A burst beyond that queues for a connection
// (commands take well under a millisecond) instead of opening hundreds that
// then sit idle: 2,000 streams arriving at once opened ~1,750 connections
// with a pool of 1,024 even once the waits were shared.
func OpenRedis(ctx context.Context, url string) (redis.UniversalClient, error) {
	return rconn.Open(ctx, url, rconn.Options{PoolSize: redisPoolSize, ReadTimeout: 10 * time.Second})
}

// redisPoolSize is the most connections a process opens to one Redis server.
const redisPoolSize = 256

// Start runs background work (batched last-used writes, revocations from
// other instances, settlement of ended jobs' reservations) until ctx ends.
func (d *Deps) Start(ctx context.Context) {
	if d.Verifier != nil {
		go d.Verifier.Run(ctx, 10*time.Second)
		d.Verifier.Subscribed(ctx, d.Redis)
	}
	go d.Admission.Settler(admission.ConsumerName(d.Config.Env.WorkerName)).Run(ctx)
}

// Ready checks that PostgreSQL and Redis answer.
func (d *Deps) Ready(ctx context.Context) error {
	return errors.Join(d.DB.Ping(ctx), d.Redis.Ping(ctx).Err())
}

// Close releases connections.
func (d *Deps) Close() {
	if d.Verifier != nil {
		d.Verifier.Flush(context.Background())
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	d.Telemetry.Shutdown(sctx) //nolint:errcheck // spans lost at exit are only spans
	cancel()
	d.Redis.Close()
	if d.ReadDB != nil {
		d.ReadDB.Close()
	}
	d.DB.Close()
}

// FromEnv loads the configuration from the process environment and opens
// the dependencies: the entry point of the OpenFaaS template and the Lambda
// adapter, and the only reader of the environment.
func FromEnv(ctx context.Context) (*Deps, error) { return FromEnvAs(ctx, Function, os.Getenv) }

// FromEnvAs is FromEnv for a role, reading the environment through getenv.
func FromEnvAs(ctx context.Context, role Role, getenv func(string) string) (*Deps, error) {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, err
	}
	d, err := OpenRole(ctx, cfg, log, role, telemetry.Options{})
	if err != nil {
		return nil, err
	}
	d.Start(context.WithoutCancel(ctx)) // runs for the life of the process
	return d, nil
}

var (
	sharedMu   sync.Mutex
	sharedDeps *Deps
)

// Shared returns the process's one set of dependencies, opened from the
// environment on first use (a failed open is retried by the next call), so
// a Lambda serving HTTP and scheduled events holds one pool of connections.
func Shared(ctx context.Context) (*Deps, error) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedDeps == nil {
		d, err := FromEnv(ctx)
		if err != nil {
			return nil, err
		}
		sharedDeps = d
	}
	return sharedDeps, nil
}

// Lazy returns an OpenFaaS/Lambda entry point that builds its handler from the
// environment on first use. A failed start (a dependency briefly down) is
// retried on a later request, at most every 5 s, instead of being kept.
func Lazy(build func(*Deps) http.Handler) http.HandlerFunc {
	var (
		mu      sync.Mutex
		h       http.Handler
		lastErr error
		lastTry time.Time
	)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" { // alive, whether or not the dependencies are
			openai.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
			return
		}
		mu.Lock()
		if h == nil && (lastErr == nil || time.Since(lastTry) > 5*time.Second) {
			lastTry = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			var d *Deps
			if d, lastErr = Shared(ctx); lastErr == nil {
				h = d.Serve(build(d))
			}
			cancel()
		}
		cur, err := h, lastErr
		mu.Unlock()
		if cur == nil {
			// Through the middleware, so even this answer has a request id
			// and a log line with the cause.
			httpserve.Middleware(slog.Default(), "starting", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				openai.WriteError(w, r, slog.Default(), sluice.Unavailable("The service is starting; retry shortly.", err))
			})).ServeHTTP(w, r)
			return
		}
		cur.ServeHTTP(w, r)
	}
}
