package postgres_test

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
)

// TestMigrate007KeepsUsage: a database from before migration 007 (every
// other migration applied, usage rows in the old unpartitioned table)
// migrates to the partitioned table with every row kept, each in its
// month's partition, and the new dedupe key still refuses a redelivery.
func TestMigrate007KeepsUsage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := postgres.Open(ctx, pgtest.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	files, _ := filepath.Glob("migrations/*.up.sql")
	sort.Strings(files)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())`); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		v, _ := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if v == 7 || v > 9 {
			continue // 007 is what this test applies; later ones come after it anyway
		}
		sql, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v, base); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO users (email) VALUES ('old@example.com');
		INSERT INTO inference_requests (user_id, model_name, tokens_used, latency_ms, timestamp, job_id, prompt_tokens,
			completion_tokens, status, job_created_at)
		SELECT (SELECT id FROM users), 'm', 3, 1, now() - g * interval '1 day', 'job' || g, 1, 2, 'succeeded',
			now() - g * interval '1 day'
		FROM generate_series(0, 99) g`); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var rows, inDefault, misplaced int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE tableoid::regclass::text = 'inference_requests_default'),
		count(*) FILTER (WHERE tableoid::regclass::text <> 'inference_requests_' || to_char(job_created_at AT TIME ZONE 'UTC', 'YYYYMM'))
		FROM inference_requests`).Scan(&rows, &inDefault, &misplaced); err != nil {
		t.Fatal(err)
	}
	if rows != 100 || inDefault != 0 || misplaced != 0 {
		t.Fatalf("after 007: %d rows, %d in DEFAULT, %d not in their month's partition", rows, inDefault, misplaced)
	}
	tag, err := db.Pool.Exec(ctx, `INSERT INTO inference_requests (user_id, model_name, tokens_used, latency_ms, job_id,
		prompt_tokens, completion_tokens, status, job_created_at)
		SELECT user_id, model_name, 1, 1, job_id, 1, 0, status, job_created_at FROM inference_requests WHERE job_id = 'job5'
		ON CONFLICT (job_id, job_created_at) DO NOTHING`)
	if err != nil || tag.RowsAffected() != 0 {
		t.Fatalf("redelivered job: %v rows, %v", tag.RowsAffected(), err)
	}
}
