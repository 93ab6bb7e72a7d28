package app_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	rollup "github.com/sluice-ai/sluice/functions/usage-rollup"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// TestMain stops the private primary and replica (pgtest.Replica) after the
// tests.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestReadReplicaRouting opens the dependencies as a deployment does, with
// DATABASE_READ_URL a real streaming replica, and serves the usage-rollup
// function from them. With the replica's replay paused (and a bound of an
// hour, so it keeps serving) a key created on the primary authenticates,
// and the balance shows a credit granted on the primary, while the usage
// report, served by the replica, does not yet show the job recorded with
// them: keys and balances are read from the primary, reports from the
// replica.
func TestReadReplicaRouting(t *testing.T) {
	ctx := t.Context()
	pair := pgtest.Replica(t)
	pu, ru := pair.NewURLs(t)
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.DatabaseURL, cfg.Env.DatabaseReadURL, cfg.Env.RedisURL = pu, ru, testenv.RedisURL()
	cfg.Env.KeyPepper = testenv.Pepper
	cfg.Database.ReadMaxLag = time.Hour
	d, err := app.OpenRole(ctx, cfg, slog.New(slog.DiscardHandler), app.Function, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := rollup.New(rollup.DepsFrom(d))

	u, err := d.DB.UpsertUser(ctx, testenv.Name("replica")+"@example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	usage := func(job string) {
		ev := sluice.UsageEvent{JobID: job, UserID: u.ID, Model: "llama-2-7b", Status: sluice.JobSucceeded,
			Usage: sluice.Usage{PromptTokens: 3, CompletionTokens: 4}, CreatedAt: time.Now(), EndedAt: time.Now()}
		if _, err := d.DB.InsertUsage(ctx, []sluice.UsageEvent{ev}); err != nil {
			t.Fatal(err)
		}
	}
	usage("job_before")
	pair.WaitReplayed(t)
	pair.PauseReplay(t)
	defer pair.ResumeReplay(t)

	// Written on the primary while the replica stands still.
	key, _ := apikey.New()
	if _, err := d.DB.CreateAPIKey(ctx, u.ID, "fresh", apikey.Hash([]byte(testenv.Pepper), key), apikey.Display(key), nil); err != nil {
		t.Fatal(err)
	}
	usage("job_during_pause")
	period := time.Now().UTC().Format("2006-01")
	if _, err := d.DB.LedgerGrant(ctx, u.ID, period, 7_000_000, "test credit"); err != nil {
		t.Fatal(err)
	}

	get := func(path string, out any) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s (a key created on the primary must authenticate)", path, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatal(err)
		}
	}
	var jobs struct {
		Data []struct {
			JobID string `json:"job_id"`
		} `json:"data"`
	}
	get("/v1/usage?group_by=job", &jobs)
	var ids []string
	for _, j := range jobs.Data {
		ids = append(ids, j.JobID)
	}
	if strings.Join(ids, ",") != "job_before" {
		t.Fatalf("usage report %v: want job_before only, from the paused replica", ids)
	}
	var bal struct {
		CreditMicros int64 `json:"credit_micros"`
	}
	get("/v1/billing/balance", &bal)
	if bal.CreditMicros < 7_000_000 {
		t.Fatalf("balance credit %d µ$: want the 7000000 granted on the primary", bal.CreditMicros)
	}

	// The process's own metrics say where the report read went.
	mfs, err := d.Telemetry.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var replicaReads float64
	for _, mf := range mfs {
		if mf.GetName() != "sluice_db_report_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "server" && l.GetValue() == "replica" {
					replicaReads = m.GetCounter().GetValue()
				}
			}
		}
	}
	if replicaReads < 1 {
		t.Fatalf("sluice_db_report_reads_total{server=replica} = %v", replicaReads)
	}
	t.Logf("replay paused: new key authenticated (primary), balance credit %d µ$ (primary), usage report %v (replica); sluice_db_report_reads_total{server=replica} = %v",
		bal.CreditMicros, ids, replicaReads)
}
