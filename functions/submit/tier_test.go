//go:build !shrinkwrap

package submit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// tierEnv is setup for service tiers: two models on two simulators behind
// recording proxies, fcfs (m) and scheduling_policy priority (mp, with its
// own flex discount and priority multiplier), both priced, and tiers with
// no included tokens, so every job is paid in money.
type tierEnv struct {
	*env
	mp             string
	fcfs, priority *enginetest.Proxy
}

func setupTiers(t *testing.T) *tierEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := testenv.Name("tier")
	mp := model + "-p"
	var proxies [2]*enginetest.Proxy
	for i, name := range []string{model, mp} {
		sim, err := devstack.StartSim(ctx, testenv.Sim(t), name, 1024, 4, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.Stop)
		proxies[i] = enginetest.NewProxy(t, sim.URL, 0)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference:
  models:
    - {name: %[1]s, max_batch_size: 4, max_model_len: 1024, endpoints: [%[3]q]}
    - {name: %[2]s, scheduling_policy: priority, max_batch_size: 4, max_model_len: 1024, endpoints: [%[4]q]}
pricing:
  %[1]s: {input_tokens: 0.000003, output_tokens: 0.000007}
  %[2]s: {input_tokens: 0.000003, output_tokens: 0.000007, flex_discount: 0.25, priority_multiplier: 1.5}
tiers:
  free: {included_credits: 0, rate_limit: 1000, tokens_per_minute: 10000000, concurrency: 32}
  pro: {included_credits: 0, rate_limit: 1000, tokens_per_minute: 10000000, concurrency: 32}
worker: {usage_flush: 20ms}
`, model, mp, proxies[0].URL, proxies[1].URL)))
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, ctx, cancel, cfg, model, redisq.Options{})
	log, db, rdb, q, adm := b.log, b.db, b.rdb, b.q, b.adm
	srv := httptest.NewServer(submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: app.NewVerifier(cfg, db, log), Admission: adm}))
	t.Cleanup(srv.Close)
	e := &tierEnv{env: &env{url: srv.URL, model: model, db: db, cfg: cfg, rdb: rdb}, mp: mp, fcfs: proxies[0], priority: proxies[1]}
	return e
}

// fundedKey is a key of a new user on tier with micros of prepaid credit.
func (e *tierEnv) fundedKey(t *testing.T, email, tier string, micros int64) string {
	t.Helper()
	ctx := context.Background()
	key := e.newKey(t, email)
	u, err := e.db.UserByEmail(ctx, email)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE users SET subscription_tier = $2 WHERE id = $1`, u.ID, tier); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.LedgerGrant(ctx, u.ID, sluice.CalendarPeriod(time.Now()), micros, "test"); err != nil {
		t.Fatal(err)
	}
	return key
}

// ledgerRow is a settled job's ledger row.
type ledgerRow struct {
	prompt, completion, credit int64
	tier                       string
}

// settled waits for a job's ledger row.
func (e *tierEnv) settled(t *testing.T, jobID string) ledgerRow {
	t.Helper()
	var r ledgerRow
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := e.db.Pool.QueryRow(context.Background(), `SELECT prompt_tokens, completion_tokens, -credit_micros, coalesce(service_tier, '')
			FROM credit_ledger WHERE job_id = $1`, jobID).Scan(&r.prompt, &r.completion, &r.credit, &r.tier)
		if err == nil {
			return r
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("ledger row of %s: %v", jobID, err)
		}
	}
}

// usageTier waits for a job's usage row and returns its service tier.
func (e *tierEnv) usageTier(t *testing.T, jobID string) string {
	t.Helper()
	var s string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := e.db.Pool.QueryRow(context.Background(), `SELECT coalesce(service_tier, '') FROM inference_requests WHERE job_id = $1`, jobID).Scan(&s)
		if err == nil {
			return s
		}
		if !errors.Is(err, pgx.ErrNoRows) || time.Now().After(deadline) {
			t.Fatalf("usage row of %s: %v", jobID, err)
		}
	}
}

// ceilPPM is ceil(money × ppm / 1e6).
func ceilPPM(money, ppm int64) int64 { return (money*ppm + 999_999) / 1_000_000 }

// TestServiceTiers: service_tier on chat and completions, end to end: each
// tier is echoed (body and every streamed chunk), queued in its class,
// billed at its factor of the model's prices (the ledger row says the
// tier), never forwarded to the engine; vLLM's priority goes only to the
// scheduling_policy priority model; a bad value is a 400 and a tier the
// plan does not allow a 403.
func TestServiceTiers(t *testing.T) {
	t.Parallel()
	e := setupTiers(t)
	pro := e.fundedKey(t, e.model+"-pro@example.com", "pro", 50_000_000)
	free := e.fundedKey(t, e.model+"-free@example.com", "free", 50_000_000)

	cases := []struct {
		name, model, endpoint, tier, echo string
		stream                            bool
		ppm                               int64
		engPriority                       int // -1: none sent
	}{
		{"flex chat", e.model, "/v1/chat/completions", "flex", "flex", false, 500_000, -1},
		{"priority chat streamed", e.model, "/v1/chat/completions", "priority", "priority", true, 2_000_000, -1},
		{"auto completion", e.model, "/v1/completions", "auto", "default", false, 1_000_000, -1},
		{"absent chat", e.model, "/v1/chat/completions", "", "default", true, 1_000_000, -1},
		{"flex on a priority engine", e.mp, "/v1/chat/completions", "flex", "flex", true, 750_000, config.BatchClass},
		{"priority on a priority engine", e.mp, "/v1/completions", "priority", "priority", false, 1_500_000, 0},
		{"default on a priority engine", e.mp, "/v1/chat/completions", "default", "default", false, 1_000_000, 1},
	}
	for i, c := range cases {
		marker := fmt.Sprintf("tiermark%d", i)
		input := fmt.Sprintf(`"messages":[{"role":"user","content":"%s please answer"}]`, marker)
		if c.endpoint == "/v1/completions" {
			input = fmt.Sprintf(`"prompt":"%s please answer"`, marker)
		}
		st := ""
		if c.tier != "" {
			st = fmt.Sprintf(`,"service_tier":%q`, c.tier)
		}
		body := fmt.Sprintf(`{"model":%q,%s,"max_tokens":12%s,"stream":%t}`, c.model, input, st, c.stream)
		resp := e.do(t, "POST", c.endpoint, pro, body, nil)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.name, resp.StatusCode, raw)
		}
		if c.stream {
			n := 0
			sc := bufio.NewScanner(strings.NewReader(string(raw)))
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok || data == "[DONE]" {
					continue
				}
				var ch struct {
					ServiceTier string `json:"service_tier"`
				}
				if err := json.Unmarshal([]byte(data), &ch); err != nil || ch.ServiceTier != c.echo {
					t.Fatalf("%s: chunk %s: service_tier %q, want %q", c.name, data, ch.ServiceTier, c.echo)
				}
				n++
			}
			if n < 2 {
				t.Fatalf("%s: %d chunks: %s", c.name, n, raw)
			}
		} else {
			var out struct {
				ServiceTier string `json:"service_tier"`
				Usage       struct{ PromptTokens, CompletionTokens int64 }
			}
			if err := json.Unmarshal(raw, &out); err != nil || out.ServiceTier != c.echo {
				t.Fatalf("%s: body %s: service_tier %q, want %q", c.name, raw, out.ServiceTier, c.echo)
			}
		}
		row := e.settled(t, resp.Header.Get("Sluice-Job-Id"))
		base := row.prompt*3 + row.completion*7
		wantTier := c.tier
		if c.ppm == 1_000_000 {
			wantTier = ""
		}
		if row.prompt == 0 || row.completion == 0 || row.credit != ceilPPM(base, c.ppm) || row.tier != wantTier {
			t.Fatalf("%s: ledger %+v: charged %d, want ceil(%d × %d ppm) = %d at tier %q", c.name, row, row.credit, base, c.ppm,
				ceilPPM(base, c.ppm), wantTier)
		}
		if got := e.usageTier(t, resp.Header.Get("Sluice-Job-Id")); got != wantTier {
			t.Fatalf("%s: usage row service_tier %q, want %q", c.name, got, wantTier)
		}
		t.Logf("%s: %d prompt + %d completion tokens, base %d µ$, charged %d µ$ (tier %q)", c.name, row.prompt, row.completion, base,
			row.credit, row.tier)
		proxy := e.fcfs
		if c.model == e.mp {
			proxy = e.priority
		}
		exs := proxy.Find(marker)
		if len(exs) != 1 {
			t.Fatalf("%s: %d engine requests", c.name, len(exs))
		}
		var sent map[string]any
		if err := json.Unmarshal(exs[0].Raw, &sent); err != nil {
			t.Fatal(err)
		}
		if _, ok := sent["service_tier"]; ok {
			t.Fatalf("%s: service_tier reached the engine: %s", c.name, exs[0].Raw)
		}
		p, ok := sent["priority"]
		switch {
		case c.engPriority < 0 && ok:
			t.Fatalf("%s: priority sent to an fcfs engine: %s", c.name, exs[0].Raw)
		case c.engPriority >= 0 && (!ok || p != float64(c.engPriority)):
			t.Fatalf("%s: engine priority %v, want %d: %s", c.name, p, c.engPriority, exs[0].Raw)
		}
	}

	// Refusals: nothing queued, nothing billed.
	for _, c := range []struct {
		key, tier string
		status    int
		code      string
	}{
		{pro, "fast", 400, "invalid_value"},
		{pro, "Flex", 400, "invalid_value"},
		{pro, "", 400, "invalid_value"}, // the empty string is no tier
		{free, "priority", 403, "permission_denied"},
	} {
		var out apiError
		resp := e.do(t, "POST", "/v1/chat/completions", c.key,
			fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"service_tier":%q}`, e.model, c.tier), &out)
		if resp.StatusCode != c.status || out.Error.Param == nil || *out.Error.Param != "service_tier" || out.Error.Code == nil || *out.Error.Code != c.code {
			t.Fatalf("service_tier %q: %d %+v", c.tier, resp.StatusCode, out)
		}
	}
	var bad apiError
	if resp := e.do(t, "POST", "/v1/chat/completions", pro,
		fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"service_tier":3}`, e.model), &bad); resp.StatusCode != 400 {
		t.Fatalf("numeric service_tier: %d %+v", resp.StatusCode, bad)
	}
	// The free tier may use flex.
	if resp := e.do(t, "POST", "/v1/chat/completions", free,
		fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"service_tier":"flex"}`, e.model), nil); resp.StatusCode != 200 {
		t.Fatalf("free flex: %d", resp.StatusCode)
	}
}
