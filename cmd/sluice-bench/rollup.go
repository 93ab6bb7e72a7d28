package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/postgres"
)

// benchRollup (`sluice-bench rollup -rows N`) generates N raw usage rows
// with generate_series in a scratch database (spread over the last 12
// months, -users users, three models), then times the usage rollup's fold
// of all of them (hourly and daily rollups, watermark, outbox, and the
// reconciliation inside the same transaction), checks that the rollups'
// totals equal raw usage to the token, and times an incremental fold of
// late rows after it.
func benchRollup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench rollup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rows := fs.Int("rows", 10_000_000, "raw usage rows to generate and fold")
	users := fs.Int("users", 100, "distinct users")
	late := fs.Int("late", 100_000, "late rows (ended up to a year ago, recorded after the first fold) for the incremental fold")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *rows < 1 || *users < 1 || *late < 0 {
		fmt.Fprintln(stderr, "sluice-bench rollup: -rows and -users must be positive, -late not negative")
		return 2
	}
	if err := runRollupBench(ctx, *rows, *users, *late, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "sluice-bench rollup:", err)
		return 1
	}
	return 0
}

// benchPrices: cached prompt tokens at the input price (no cached_input_tokens).
var benchPrices = []postgres.ModelPrices{{Model: "llama-2-7b", InputMicros: 100, OutMicros: 200, CachedInputMicros: 100},
	{Model: "mistral-7b", InputMicros: 150, OutMicros: 300, CachedInputMicros: 150},
	{Model: "small-1b", InputMicros: 20, OutMicros: 40, CachedInputMicros: 20}}

func runRollupBench(ctx context.Context, rows, users, late int, w, logw io.Writer) error {
	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "BENCH_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, "sluice_bench_")
	if err != nil {
		return err
	}
	defer dropDB()
	db, err := postgres.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return err
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO users (email) SELECT 'bench' || g || '@example.com' FROM generate_series(1, $1) g`, users); err != nil {
		return err
	}
	// Partitions for the 12 months the rows span, and 3 ahead.
	if _, err := db.Pool.Exec(ctx, `SELECT sluice_usage_partitions(now() - interval '12 months', 3)`); err != nil {
		return err
	}
	gen := func(from, n int, endedAgo string) error {
		// One statement per million rows: each commits on its own, as a
		// real stream of worker batches would.
		for off := 0; off < n; off += 1_000_000 {
			k := min(1_000_000, n-off)
			_, err := db.Pool.Exec(ctx, `
				WITH u AS (SELECT array_agg(id ORDER BY id) AS ids FROM users)
				INSERT INTO inference_requests (user_id, model_name, tokens_used, latency_ms, timestamp, job_id,
					prompt_tokens, completion_tokens, status, job_created_at)
				SELECT u.ids[1 + g % $3], (ARRAY['llama-2-7b', 'mistral-7b', 'small-1b'])[1 + (g / 7) % 3],
					(20 + g % 300) + (g % 97), 100 + g % 900, c + interval '2 seconds', 'job_bench_' || g,
					20 + g % 300, g % 97, 'succeeded', c
				FROM u, generate_series($1::bigint, $1::bigint + $2 - 1) g,
					LATERAL (SELECT now() - `+endedAgo+` AS c) t`, from+off, k, users)
			if err != nil {
				return err
			}
			fmt.Fprintf(logw, "generated %d rows\n", off+k)
		}
		return nil
	}
	start := time.Now()
	// Spread over the last 12 months (minute resolution, by the row number).
	if err := gen(0, rows, `make_interval(mins => ((g * 7919) % (365 * 24 * 60))::int)`); err != nil {
		return err
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE inference_requests`); err != nil {
		return err
	}
	genTook := time.Since(start)

	fold := func(want int64) (took time.Duration, runs int, f postgres.Fold, err error) {
		start := time.Now()
		var got int64
		for got < want {
			var r postgres.Fold
			if r, err = db.FoldUsage(ctx, benchPrices); err != nil {
				return
			}
			runs++
			got += r.Folded.Requests
			f.Folded.Requests += r.Folded.Requests
			f.HourlyRows += r.HourlyRows
			f.DailyRows += r.DailyRows
			f.Reconcile.Took += r.Reconcile.Took
			if len(r.Reconcile.Differences) > 0 {
				err = fmt.Errorf("reconciliation: %v", r.Reconcile.Differences)
				return
			}
			if got < want {
				time.Sleep(20 * time.Millisecond) // a transaction elsewhere holds the horizon back
			}
		}
		return time.Since(start), runs, f, nil
	}
	fullTook, fullRuns, full, err := fold(int64(rows))
	if err != nil {
		return err
	}
	if err := gen(rows, late, `make_interval(mins => ((g * 104729) % (365 * 24 * 60))::int)`); err != nil {
		return err
	}
	lateTook, lateRuns, lateF, err := fold(int64(late))
	if err != nil {
		return err
	}
	// Recent late rows: ended in the last three days, the usual case (a
	// worker's backlog, a retry).
	if err := gen(rows+late, late, `make_interval(mins => ((g * 104729) % (3 * 24 * 60))::int)`); err != nil {
		return err
	}
	recentTook, recentRuns, recentF, err := fold(int64(late))
	if err != nil {
		return err
	}
	var raw, daily, hourly [3]int64
	for q, out := range map[string]*[3]int64{
		`SELECT count(*), sum(prompt_tokens), sum(completion_tokens) FROM inference_requests`: &raw,
		`SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM usage_daily`:   &daily,
		`SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM usage_hourly`:  &hourly,
	} {
		if err := db.Pool.QueryRow(ctx, q).Scan(&out[0], &out[1], &out[2]); err != nil {
			return err
		}
	}
	if raw != daily || raw != hourly {
		return fmt.Errorf("totals differ: raw %v, daily %v, hourly %v", raw, daily, hourly)
	}
	var hourlyRows, dailyRows, parts int64
	db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_hourly), (SELECT count(*) FROM usage_daily),
		(SELECT count(*) FROM pg_inherits WHERE inhparent = 'inference_requests'::regclass)`).Scan(&hourlyRows, &dailyRows, &parts) //nolint:errcheck
	fmt.Fprintf(w, `## Usage rollup, %d raw rows (sluice-bench rollup)

%d users, 3 models, rows spread over 12 months in %d partitions; generated with generate_series in %s.
GOMAXPROCS %d; PostgreSQL at BENCH_DATABASE_URL/TEST_DATABASE_URL (a scratch database).

| fold | rows | runs | time | rows/s | of which reconciliation | hourly rows upserted | daily rows upserted |
|---|---:|---:|---:|---:|---:|---:|---:|
| all rows, first run | %d | %d | %s | %.0f | %s | %d | %d |
| late rows (ended up to a year ago) | %d | %d | %s | %.0f | %s | %d | %d |
| late rows (ended in the last 3 days) | %d | %d | %s | %.0f | %s | %d | %d |

Each fold includes the reconciliation of exactly the days it touched (inside its transaction;
it reads every raw row of those days, so late rows spread over a year make it a full scan).
Totals after all three: raw usage %d requests, %d prompt and %d completion tokens; usage_daily and usage_hourly equal them to the token.
Rollup tables: %d hourly rows, %d daily rows.
`, rows, users, parts, genTook.Round(time.Second), runtime.GOMAXPROCS(0),
		full.Folded.Requests, fullRuns, fullTook.Round(time.Millisecond), float64(full.Folded.Requests)/fullTook.Seconds(), full.Reconcile.Took.Round(time.Millisecond), full.HourlyRows, full.DailyRows,
		lateF.Folded.Requests, lateRuns, lateTook.Round(time.Millisecond), float64(lateF.Folded.Requests)/lateTook.Seconds(), lateF.Reconcile.Took.Round(time.Millisecond), lateF.HourlyRows, lateF.DailyRows,
		recentF.Folded.Requests, recentRuns, recentTook.Round(time.Millisecond), float64(recentF.Folded.Requests)/recentTook.Seconds(), recentF.Reconcile.Took.Round(time.Millisecond), recentF.HourlyRows, recentF.DailyRows,
		raw[0], raw[1], raw[2], hourlyRows, dailyRows)
	return nil
}
