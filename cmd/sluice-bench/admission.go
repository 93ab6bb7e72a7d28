package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// benchAdmission (`sluice-bench admission`) measures the admission step
// alone, as submit runs it per request: key verification (cached, as in
// steady state) plus the admission script (requests, tokens, concurrency
// lease, funds hold), against real PostgreSQL and Redis. Every limit is set
// (high enough never to refuse) so the script does all its work.
func benchAdmission(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-bench admission", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20000, "admissions per concurrency level")
	redisDB := fs.Int("redis-db", 9, "Redis database index used (flushed before and after)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := runAdmissionBench(ctx, *n, *redisDB, stdout); err != nil {
		fmt.Fprintln(stderr, "sluice-bench admission:", err)
		return 1
	}
	return 0
}

func runAdmissionBench(ctx context.Context, n, redisDB int, w io.Writer) error {
	adminURL := scratch.FirstEnv("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "BENCH_DATABASE_URL", "TEST_DATABASE_URL")
	dbURL, dropDB, err := scratch.CreateDatabase(ctx, adminURL, "sluice_bench_")
	if err != nil {
		return err
	}
	defer dropDB()
	redisURL, err := scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), redisDB)
	if err != nil {
		return err
	}
	rdb, err := scratch.FlushRedis(ctx, redisURL)
	if err != nil {
		return err
	}
	defer func() { scratch.Flush(context.WithoutCancel(ctx), rdb); rdb.Close() }()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`inference:
  models:
    - name: %[1]s
      endpoints: [http://127.0.0.1:1]
pricing:
  %[1]s:
    input_tokens: 0.000001
    output_tokens: 0.000002
tiers:
  free:
    monthly_cost: 0
    included_credits: 1000
    rate_limit: 1000000000
    tokens_per_minute: 100000000000
    concurrency: 1000000000
    overage: postpaid
    overage_cap: 1000000
`, model)))
	if err != nil {
		return err
	}
	cfg.Env = config.Env{DatabaseURL: dbURL, RedisURL: redisURL, KeyPepper: scratch.RandHex(32), WebhookSecret: scratch.RandHex(32)}
	d, err := app.Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer d.Close()
	m, _ := cfg.Model(model)
	fmt.Fprintf(w, "\nAdmission step alone (key verification, cached + admission script with every limit and a funds hold), %d admissions per level:\n\n", n)
	fmt.Fprintln(w, "| in flight | p50 ms | p90 ms | p99 ms | admissions/s |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|")
	for _, c := range []int{1, 32} {
		// A fresh user per level: the funds come from overage, past the included tokens.
		u, err := d.DB.UpsertUser(ctx, fmt.Sprintf("bench-%d-%s@example.com", c, scratch.RandHex(4)), "free", "user")
		if err != nil {
			return err
		}
		key, err := devstack.CreateKey(ctx, d, u.ID, "bench")
		if err != nil {
			return err
		}
		lat := make([]time.Duration, n)
		var next int64 = -1
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		start := time.Now()
		for range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					next++
					i := next
					mu.Unlock()
					if i >= int64(n) {
						return
					}
					r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://x/v1/chat/completions", nil)
					r.Header.Set("Authorization", "Bearer "+key)
					t0 := time.Now()
					p, err := d.Verifier.Authenticate(ctx, r)
					if err == nil {
						_, err = d.Admission.Admit(ctx, admission.Request{JobID: rkey.NewJobID(model), UserID: p.UserID,
							Tier: p.Tier, Model: m, PromptBytes: 40, Messages: 1, MaxTokens: 16, Timeout: time.Minute, Limits: p.Limits, Period: p.Period})
					}
					lat[i] = time.Since(t0)
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		if firstErr != nil {
			return firstErr
		}
		slices.Sort(lat)
		q := func(p float64) float64 { return ms(lat[int(p*float64(n-1))]) }
		fmt.Fprintf(w, "| %d | %.3f | %.3f | %.3f | %.0f |\n", c, q(0.5), q(0.9), q(0.99), float64(n)/took.Seconds())
	}
	fmt.Fprintf(w, "\n%s\n", "Command: `go run ./cmd/sluice-bench admission`.")
	return nil
}
