package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// ReportReader is the report reads: usage, statements, invoices, revenue
// and the business metrics. They are the only reads a read replica may
// serve, because a report a few seconds old is still right. Keys, users,
// sessions and balances are not here on purpose: a lagging replica would
// turn a new key into a 401 (which the verifier then caches), keep a
// revoked key or a disabled user working, and admit spending against
// money already spent. Those reads take the primary *DB.
type ReportReader interface {
	sluice.UsageReports
	Business(ctx context.Context, n int) (BusinessStats, error)
}

var (
	_ ReportReader = (*DB)(nil)
	_ ReportReader = (*Reports)(nil)
)

// ReplicaOptions say when the replica may serve a report read.
type ReplicaOptions struct {
	// MaxLag: a replica further behind the primary serves nothing.
	MaxLag time.Duration
	// CheckInterval: how long one check of the replica is trusted.
	CheckInterval time.Duration
	// CheckTimeout bounds one check.
	CheckTimeout time.Duration
}

// Fallback reasons: why a report read went to the primary although a
// replica is configured (the reason label of sluice_db_read_fallbacks_total).
const (
	// FallbackDown: the replica did not answer its check, or a read on it
	// failed to reach it.
	FallbackDown = "down"
	// FallbackLag: the replica answered but is more than MaxLag behind.
	FallbackLag = "lag"
	// FallbackError: a read on a live replica failed with a server error
	// (a query cancelled for a recovery conflict, say); it is retried on
	// the primary.
	FallbackError = "error"
)

var fallbackReasons = []string{FallbackDown, FallbackLag, FallbackError}

// Reports routes the report reads to a streaming read replica while it is
// up and at most MaxLag behind the primary, and to the primary otherwise,
// so a dead or lagging replica costs freshness of nothing and availability
// of nothing. It is also the Prometheus collector of the routing.
type Reports struct {
	primary *DB
	replica *DB // nil: every read goes to the primary
	opts    ReplicaOptions
	log     *slog.Logger

	mu      sync.Mutex // one check at a time; guards the fields below
	checked time.Time
	reason  string // "" while the replica may serve, else a Fallback reason
	lag     time.Duration
	lagOK   bool // lag was measured by the last check

	replicaReads, primaryReads atomic.Uint64
	fallbacks                  [3]atomic.Uint64 // by fallbackReasons
}

// NewReports routes report reads between primary and replica (nil: no
// replica; every read goes to the primary).
func NewReports(primary, replica *DB, o ReplicaOptions, log *slog.Logger) *Reports {
	return &Reports{primary: primary, replica: replica, opts: o, log: log}
}

// OpenReplica builds the pool of a read replica without connecting: a
// replica that is down when the process starts must not stop it, since
// the primary serves its reads until it answers.
func OpenReplica(url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DATABASE_READ_URL: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: DATABASE_READ_URL: %w", err)
	}
	return &DB{Pool: pool}, nil
}

// route runs read on the replica when it may serve, else on the primary,
// and retries a read the replica failed on the primary.
func route[T any](ctx context.Context, r *Reports, read func(*DB) (T, error)) (T, error) {
	if r.replica == nil {
		r.primaryReads.Add(1)
		return read(r.primary)
	}
	reason := r.status(ctx)
	if reason == "" {
		v, err := read(r.replica)
		if err == nil || errors.Is(err, sluice.ErrNotFound) || ctx.Err() != nil {
			r.replicaReads.Add(1)
			return v, err
		}
		reason = r.failed(ctx, err)
	}
	r.fallbacks[indexOf(reason)].Add(1)
	r.primaryReads.Add(1)
	return read(r.primary)
}

func indexOf(reason string) int {
	for i, s := range fallbackReasons {
		if s == reason {
			return i
		}
	}
	return 0
}

// status is why the replica may not serve now ("" if it may), checking
// it when the last check is older than CheckInterval.
func (r *Reports) status(ctx context.Context) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.checked.IsZero() && time.Since(r.checked) < r.opts.CheckInterval {
		return r.reason
	}
	reason, lag, lagOK := r.check(ctx)
	r.setState(ctx, reason, lag, lagOK)
	return reason
}

// setState records a check's outcome and logs changes of state, not every
// check. The caller holds mu.
func (r *Reports) setState(ctx context.Context, reason string, lag time.Duration, lagOK bool) {
	if reason != r.reason && r.log != nil {
		switch reason {
		case "":
			r.log.InfoContext(ctx, "read replica serving report reads", slog.Duration("lag", lag))
		case FallbackLag:
			r.log.WarnContext(ctx, "read replica behind the primary: report reads go to the primary",
				slog.Duration("lag", lag), slog.Duration("max_lag", r.opts.MaxLag))
		default:
			r.log.WarnContext(ctx, "read replica unavailable: report reads go to the primary", slog.String("reason", reason))
		}
	}
	if reason == FallbackDown && r.reason != FallbackDown {
		// Its pooled connections are dead (or on a server that restarted):
		// drop them, so the first check after it returns opens new ones
		// instead of failing on an old one.
		r.replica.Pool.Reset()
	}
	r.checked, r.reason, r.lag, r.lagOK = time.Now(), reason, lag, lagOK
}

// failed handles a read the replica could not serve: a connection-level
// failure marks it down until the next check; another server error (a
// query cancelled for a recovery conflict) only makes the next read check
// again.
func (r *Reports) failed(ctx context.Context, err error) string {
	var pe *pgconn.PgError
	r.mu.Lock()
	defer r.mu.Unlock()
	// Class 08 (connection exception) and 57P (the server shutting down,
	// crashed or still starting) say the replica is gone, like a refused
	// connection; any other server error is about this query.
	if errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "08") && !strings.HasPrefix(pe.Code, "57P") {
		r.checked = time.Time{}
		if r.log != nil {
			r.log.WarnContext(ctx, "report read failed on the read replica; retried on the primary", slog.String("err", err.Error()))
		}
		return FallbackError
	}
	r.setState(ctx, FallbackDown, 0, false)
	return FallbackDown
}

// check measures the replica. Lag is zero when it has replayed all the WAL
// the primary had flushed just before; otherwise it is the time since the
// last transaction it replayed was committed, an upper bound of how stale
// its data is (on a primary idle for a while, a replica that is only
// replaying housekeeping WAL can look behind for one check). Without the
// primary's position (the primary is down) a replica is caught up when it
// has replayed all it received.
func (r *Reports) check(ctx context.Context) (reason string, lag time.Duration, lagOK bool) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.CheckTimeout)
	defer cancel()
	var primaryLSN *string
	var s string
	if err := r.primary.Pool.QueryRow(cctx, q("PrimaryWALPosition")).Scan(&s); err == nil {
		primaryLSN = &s
	}
	var (
		inRecovery, caughtUp bool
		sinceReplay          float64
	)
	err := r.replica.Pool.QueryRow(cctx, q("ReplicaLag"), primaryLSN).Scan(&inRecovery, &caughtUp, &sinceReplay)
	if err != nil {
		return FallbackDown, 0, false
	}
	if !inRecovery || caughtUp { // not a standby (a promoted one): nothing to lag
		return "", 0, true
	}
	lag = time.Duration(sinceReplay * float64(time.Second))
	if lag > r.opts.MaxLag {
		return FallbackLag, lag, true
	}
	return "", lag, true
}

// UsageForUser implements sluice.UsageReports.
func (r *Reports) UsageForUser(ctx context.Context, userID string) ([]UsageRow, error) {
	return route(ctx, r, func(db *DB) ([]UsageRow, error) { return db.UsageForUser(ctx, userID) })
}

// UsageFoldedAt implements sluice.UsageReports.
func (r *Reports) UsageFoldedAt(ctx context.Context) (*time.Time, error) {
	return route(ctx, r, func(db *DB) (*time.Time, error) { return db.UsageFoldedAt(ctx) })
}

// UsageDaily implements sluice.UsageReports.
func (r *Reports) UsageDaily(ctx context.Context, userID string, first, last time.Time) ([]DailyUsage, error) {
	return route(ctx, r, func(db *DB) ([]DailyUsage, error) { return db.UsageDaily(ctx, userID, first, last) })
}

// UsageByKey implements sluice.UsageReports.
func (r *Reports) UsageByKey(ctx context.Context, userID string, first, last time.Time, prices []ModelPrices) ([]KeyUsage, error) {
	return route(ctx, r, func(db *DB) ([]KeyUsage, error) { return db.UsageByKey(ctx, userID, first, last, prices) })
}

// Statements implements sluice.UsageReports.
func (r *Reports) Statements(ctx context.Context, userID string, n int) ([]Statement, error) {
	return route(ctx, r, func(db *DB) ([]Statement, error) { return db.Statements(ctx, userID, n) })
}

// UserInvoices implements sluice.UsageReports.
func (r *Reports) UserInvoices(ctx context.Context, userID string) ([]StatementInvoice, error) {
	return route(ctx, r, func(db *DB) ([]StatementInvoice, error) { return db.UserInvoices(ctx, userID) })
}

// Revenue implements sluice.UsageReports.
func (r *Reports) Revenue(ctx context.Context, days int) ([]RevenueDay, error) {
	return route(ctx, r, func(db *DB) ([]RevenueDay, error) { return db.Revenue(ctx, days) })
}

// Business computes the business metrics (see DB.Business).
func (r *Reports) Business(ctx context.Context, n int) (BusinessStats, error) {
	return route(ctx, r, func(db *DB) (BusinessStats, error) { return db.Business(ctx, n) })
}

// Close closes the replica's pool; the primary belongs to the caller.
func (r *Reports) Close() {
	if r.replica != nil {
		r.replica.Close()
	}
}

var (
	readFallbacks = prometheus.NewDesc("sluice_db_read_fallbacks_total",
		"Report reads sent to the primary although a read replica is configured, by reason: down (unreachable), lag (behind more than database.read_max_lag), error (a query failed on the replica and was retried).",
		[]string{"reason"}, nil)
	reportReads = prometheus.NewDesc("sluice_db_report_reads_total",
		"Report reads (usage, statements, invoices, revenue, business metrics) by the server that served them: replica or primary.",
		[]string{"server"}, nil)
	replicaLag = prometheus.NewDesc("sluice_db_replica_lag_seconds",
		"How far the read replica was behind the primary at its last check (0: it had replayed everything); absent while it is down or none is configured.",
		nil, nil)
	replicaUp = prometheus.NewDesc("sluice_db_replica_up",
		"1 when the read replica answered its last check; absent when none is configured.", nil, nil)
)

// Describe implements prometheus.Collector.
func (r *Reports) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{readFallbacks, reportReads, replicaLag, replicaUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A scrape checks the replica when
// the last check is stale, so the lag gauge moves without report reads.
func (r *Reports) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(reportReads, prometheus.CounterValue, float64(r.replicaReads.Load()), "replica")
	ch <- prometheus.MustNewConstMetric(reportReads, prometheus.CounterValue, float64(r.primaryReads.Load()), "primary")
	for i, reason := range fallbackReasons {
		ch <- prometheus.MustNewConstMetric(readFallbacks, prometheus.CounterValue, float64(r.fallbacks[i].Load()), reason)
	}
	if r.replica == nil {
		return
	}
	r.status(context.Background())
	r.mu.Lock()
	reason, lag, lagOK := r.reason, r.lag, r.lagOK
	r.mu.Unlock()
	up := 1.0
	if reason == FallbackDown {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(replicaUp, prometheus.GaugeValue, up)
	if lagOK {
		ch <- prometheus.MustNewConstMetric(replicaLag, prometheus.GaugeValue, lag.Seconds())
	}
}
