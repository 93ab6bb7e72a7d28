package postgres_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestMain stops the private primary and replica (pgtest.Replica) after the
// tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replicaSetup is one test's schema on the private primary and replica.
type replicaSetup struct {
	pair             *pgtest.Pair
	primary, replica *postgres.DB
	user             string
}

func newReplicaSetup(t *testing.T) replicaSetup {
	t.Helper()
	pair := pgtest.Replica(t)
	pu, ru := pair.NewURLs(t)
	primary, err := postgres.Open(t.Context(), pu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(primary.Close)
	replica, err := postgres.OpenReplica(ru)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close)
	u, err := primary.UpsertUser(t.Context(), "replica@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	return replicaSetup{pair: pair, primary: primary, replica: replica, user: u.ID}
}

// addUsage records one job of the user on the primary.
func (s replicaSetup) addUsage(t *testing.T, job string) {
	t.Helper()
	ev := sluice.UsageEvent{JobID: job, UserID: s.user, Model: "m", Status: sluice.JobSucceeded,
		Usage: sluice.Usage{PromptTokens: 3, CompletionTokens: 4}, CreatedAt: time.Now(), EndedAt: time.Now()}
	if _, err := s.primary.InsertUsage(t.Context(), []sluice.UsageEvent{ev}); err != nil {
		t.Fatal(err)
	}
}

// jobs is the user's usage as the reports read it.
func jobs(t *testing.T, r *postgres.Reports, user string) []string {
	t.Helper()
	rows, err := r.UsageForUser(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, u := range rows {
		out[i] = u.JobID
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// metric reads one series of the routing's metrics (labels: name=value).
func metric(t *testing.T, r *postgres.Reports, name string, label ...string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(label); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == label[i] && lp.GetValue() == label[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func counts(t *testing.T, r *postgres.Reports) string {
	t.Helper()
	v := func(name string, l ...string) float64 { f, _ := metric(t, r, name, l...); return f }
	return fmt.Sprintf("reads replica=%v primary=%v fallbacks down=%v lag=%v error=%v",
		v("sluice_db_report_reads_total", "server", "replica"), v("sluice_db_report_reads_total", "server", "primary"),
		v("sluice_db_read_fallbacks_total", "reason", "down"), v("sluice_db_read_fallbacks_total", "reason", "lag"),
		v("sluice_db_read_fallbacks_total", "reason", "error"))
}

// TestReadReplica runs against a real primary and streaming replica
// (pg_basebackup -R). Its subtests stop the replica and pause its replay,
// so they run in order and nothing else in this binary uses the pair.
func TestReadReplica(t *testing.T) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	check := func(maxLag time.Duration) postgres.ReplicaOptions {
		// CheckInterval 0: every read checks, so each step sees the state it set up.
		return postgres.ReplicaOptions{MaxLag: maxLag, CheckInterval: 0, CheckTimeout: 2 * time.Second}
	}

	t.Run("replayed write is read from the replica", func(t *testing.T) {
		s := newReplicaSetup(t)
		r := postgres.NewReports(s.primary, s.replica, check(time.Hour), log)
		s.addUsage(t, "job_replayed")
		s.pair.WaitReplayed(t)
		if got := jobs(t, r, s.user); !has(got, "job_replayed") {
			t.Fatalf("replica after replay: %v", got)
		}
		if n, _ := metric(t, r, "sluice_db_report_reads_total", "server", "replica"); n != 1 {
			t.Fatalf("replica reads = %v, want 1 (%s)", n, counts(t, r))
		}
		lag, ok := metric(t, r, "sluice_db_replica_lag_seconds")
		t.Logf("read from the replica after replay; lag gauge %v (%v); %s", lag, ok, counts(t, r))
	})

	t.Run("report reads hit the replica; keys, users and balances the primary", func(t *testing.T) {
		s := newReplicaSetup(t)
		// A bound of an hour keeps the paused replica serving: what it
		// returns then can only have come from it.
		r := postgres.NewReports(s.primary, s.replica, check(time.Hour), log)
		s.addUsage(t, "job_before")
		s.pair.WaitReplayed(t)
		s.pair.PauseReplay(t)
		defer s.pair.ResumeReplay(t)
		s.addUsage(t, "job_during_pause")
		u, err := s.primary.UpsertUser(t.Context(), "fresh@example.com", "pro", "user")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.primary.LedgerGrant(t.Context(), s.user, "", 5_000_000, "test credit"); err != nil {
			t.Fatal(err)
		}
		got := jobs(t, r, s.user)
		if !has(got, "job_before") || has(got, "job_during_pause") {
			t.Fatalf("report read %v: want job_before only (served by the paused replica)", got)
		}
		// The same report read on the primary sees the new row: the
		// replica really is behind, so the read above was its answer.
		fresh, err := s.primary.UsageForUser(t.Context(), s.user)
		if err != nil || len(fresh) != 2 {
			t.Fatalf("primary usage: %d rows, %v", len(fresh), err)
		}
		// Users and balances are read from the primary: fresh at once.
		if got, err := s.primary.UserByEmail(t.Context(), "fresh@example.com"); err != nil || got.ID != u.ID {
			t.Fatalf("new user on the primary: %+v %v", got, err)
		}
		var onReplica int
		if err := s.replica.Pool.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE email = 'fresh@example.com'`).Scan(&onReplica); err != nil {
			t.Fatal(err)
		}
		if onReplica != 0 {
			t.Fatalf("the paused replica has the new user (%d rows): it is not behind", onReplica)
		}
		if b, err := s.primary.LedgerBalance(t.Context(), s.user, ""); err != nil || b.CreditMicros != 5_000_000 {
			t.Fatalf("balance on the primary: %+v %v", b, err)
		}
		t.Logf("paused replica: report read %v (primary has %d rows); new user on the replica: %d rows, on the primary: found; balance on the primary: 5000000 µ$; %s",
			got, len(fresh), onReplica, counts(t, r))
	})

	t.Run("lag beyond the bound falls back with reason lag", func(t *testing.T) {
		s := newReplicaSetup(t)
		r := postgres.NewReports(s.primary, s.replica, check(50*time.Millisecond), log)
		s.pair.PauseReplay(t)
		resumed := false
		defer func() {
			if !resumed {
				s.pair.ResumeReplay(t)
			}
		}()
		s.addUsage(t, "job_lagging")
		// The replica stops serving once it is 50 ms behind; from then on
		// the read is the primary's, which has the row.
		deadline := time.Now().Add(30 * time.Second)
		for !has(jobs(t, r, s.user), "job_lagging") {
			if time.Now().After(deadline) {
				t.Fatalf("reads still served by the paused replica: %s", counts(t, r))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n, _ := metric(t, r, "sluice_db_read_fallbacks_total", "reason", "lag"); n < 1 {
			t.Fatalf("no lag fallback counted: %s", counts(t, r))
		}
		lag, _ := metric(t, r, "sluice_db_replica_lag_seconds")
		if lag <= 0.05 {
			t.Fatalf("lag gauge %v while the replica is paused", lag)
		}
		t.Logf("paused replica: fallback to the primary, lag gauge %.3fs; %s", lag, counts(t, r))
		s.pair.ResumeReplay(t)
		resumed = true
		s.pair.WaitReplayed(t)
		before, _ := metric(t, r, "sluice_db_report_reads_total", "server", "replica")
		if got := jobs(t, r, s.user); !has(got, "job_lagging") {
			t.Fatalf("after resume: %v", got)
		}
		if after, _ := metric(t, r, "sluice_db_report_reads_total", "server", "replica"); after != before+1 {
			t.Fatalf("caught-up replica not used again: %s", counts(t, r))
		}
		t.Logf("replay resumed: the replica serves again; %s", counts(t, r))
	})

	t.Run("dead replica falls back; back again, used without a restart", func(t *testing.T) {
		s := newReplicaSetup(t)
		r := postgres.NewReports(s.primary, s.replica, check(5*time.Second), log)
		s.addUsage(t, "job_1")
		s.pair.WaitReplayed(t)
		if got := jobs(t, r, s.user); !has(got, "job_1") {
			t.Fatalf("before the kill: %v", got)
		}
		s.pair.KillReplica(t)
		restarted := false
		defer func() {
			if !restarted {
				s.pair.StartReplica(t)
			}
		}()
		s.addUsage(t, "job_2")
		if got := jobs(t, r, s.user); !has(got, "job_2") {
			t.Fatalf("with the replica dead: %v", got)
		}
		if n, _ := metric(t, r, "sluice_db_read_fallbacks_total", "reason", "down"); n != 1 {
			t.Fatalf("down fallbacks: %s", counts(t, r))
		}
		if up, ok := metric(t, r, "sluice_db_replica_up"); !ok || up != 0 {
			t.Fatalf("sluice_db_replica_up = %v (%v) with the replica dead", up, ok)
		}
		t.Logf("replica killed (SIGKILL): read served by the primary; %s", counts(t, r))
		s.pair.StartReplica(t)
		restarted = true
		s.pair.WaitReplayed(t)
		before, _ := metric(t, r, "sluice_db_report_reads_total", "server", "replica")
		if got := jobs(t, r, s.user); !has(got, "job_2") {
			t.Fatalf("replica back: %v", got)
		}
		if after, _ := metric(t, r, "sluice_db_report_reads_total", "server", "replica"); after != before+1 {
			t.Fatalf("restarted replica not used again: %s", counts(t, r))
		}
		if up, _ := metric(t, r, "sluice_db_replica_up"); up != 1 {
			t.Fatalf("sluice_db_replica_up = %v with the replica back", up)
		}
		t.Logf("replica restarted: the same Reports reads from it again; %s", counts(t, r))
	})

	t.Run("replica dying between checks: the failed read is retried on the primary", func(t *testing.T) {
		s := newReplicaSetup(t)
		r := postgres.NewReports(s.primary, s.replica,
			postgres.ReplicaOptions{MaxLag: 5 * time.Second, CheckInterval: time.Hour, CheckTimeout: 2 * time.Second}, log)
		s.addUsage(t, "job_1")
		s.pair.WaitReplayed(t)
		if got := jobs(t, r, s.user); !has(got, "job_1") { // checked once, trusted for an hour
			t.Fatalf("before the kill: %v", got)
		}
		s.pair.KillReplica(t)
		defer s.pair.StartReplica(t)
		if got := jobs(t, r, s.user); !has(got, "job_1") {
			t.Fatalf("read during the kill: %v", got)
		}
		if n, _ := metric(t, r, "sluice_db_read_fallbacks_total", "reason", "down"); n != 1 {
			t.Fatalf("down fallbacks: %s", counts(t, r))
		}
		t.Logf("replica killed between checks: the read failed on it and was served by the primary; %s", counts(t, r))
	})

	t.Run("no replica: every read on the primary, no fallbacks", func(t *testing.T) {
		s := newReplicaSetup(t)
		r := postgres.NewReports(s.primary, nil, check(time.Second), log)
		s.addUsage(t, "job_1")
		if got := jobs(t, r, s.user); !has(got, "job_1") {
			t.Fatalf("%v", got)
		}
		if _, ok := metric(t, r, "sluice_db_replica_up"); ok {
			t.Fatal("sluice_db_replica_up exported without a replica")
		}
		if n, _ := metric(t, r, "sluice_db_read_fallbacks_total", "reason", "down"); n != 0 {
			t.Fatalf("fallbacks without a replica: %s", counts(t, r))
		}
	})
}
