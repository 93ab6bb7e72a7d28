package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-ai/sluice/internal/testenv"
)

// TestCachedTokenPricingEndToEnd (issue 18, must show: cached-token pricing
// end to end): the same long prompt sent again through the real stack
// (openai-go SDK, submit, worker, a simulator with its prefix cache on,
// admission, settlement, the scheduled rollup) is served partly from the
// engine's cache; the SDK sees usage.prompt_tokens_details.cached_tokens,
// and the ledger, /v1/usage (by day and by key) and the statement charge
// those tokens at pricing.<model>.cached_input_tokens, to the micro-dollar
// as computed here from the engine's own counts.
func TestCachedTokenPricingEndToEnd(t *testing.T) {
	t.Parallel()
	model := testenv.Name("cached")
	sim := testenv.PrefixCacheSim(t, model)
	s := startStackEnv(t, map[string]string{"SLUICE_TEST_CHAT": model, "SLUICE_TEST_CHAT_ENDPOINT": sim}, `
pricing:
  "%CHAT%":
    input_tokens: 0.0001
    output_tokens: 0.0002
    cached_input_tokens: 0.000025
tiers:
  free:
    rate_limit: 1000
    included_credits: 0
    overage: postpaid
    overage_cap: 100
usage_rollup:
  schedule: 1s
`)
	const pin, pout, pcached = 100, 200, 25 // micro-dollars a token
	ctx := context.Background()
	email := "cached-" + model + "@example.com"
	key := s.newKey(t, email)
	c := s.client(key)

	// /v1/models publishes the cached price.
	var m struct {
		Pricing struct {
			Input  int64  `json:"input_micros_per_token"`
			Cached *int64 `json:"cached_input_micros_per_token"`
		}
	}
	if st := s.getJSON(t, key, "/v1/models/"+model, &m); st != 200 || m.Pricing.Input != pin || m.Pricing.Cached == nil || *m.Pricing.Cached != pcached {
		t.Fatalf("GET /v1/models/%s: %d %+v", model, st, m)
	}

	// A long shared prefix (about 300 tokens, many 16-token blocks) and a
	// short question after it.
	words := make([]string, 300)
	for i := range words {
		words[i] = "w" + strconv.Itoa(i)
	}
	prefix := strings.Join(words, " ")
	type job struct {
		id                    string
		prompt, cached, compl int64
		want, saved           int64 // charged, and saved by caching
		list, listSaved       int64 // the same at list price (no tier factor), as the rollups count
	}
	var jobs []job
	price := func(j *job) {
		j.want = (j.prompt-j.cached)*pin + j.cached*pcached + j.compl*pout
		j.saved = j.cached * (pin - pcached)
		j.list, j.listSaved = j.want, j.saved
	}
	for i := range 3 {
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prefix + " question " + strconv.Itoa(i))},
			MaxTokens: openai.Int(4)}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		u := out.Usage
		j := job{id: resp.Header.Get("Sluice-Job-Id"), prompt: u.PromptTokens, cached: u.PromptTokensDetails.CachedTokens, compl: u.CompletionTokens}
		if i > 0 && (j.cached <= 0 || j.cached > j.prompt) {
			t.Fatalf("request %d: the SDK sees cached_tokens %d of %d prompt tokens; want the repeated prefix cached", i, j.cached, j.prompt)
		}
		price(&j)
		jobs = append(jobs, j)
	}
	// Streamed: the stream's usage chunk carries the cached count too.
	st := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: model,
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prefix + " question streamed")},
		MaxTokens:     openai.Int(4),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var sj job
	for st.Next() {
		ch := st.Current()
		if sj.id == "" {
			sj.id = ch.ID
		}
		if ch.Usage.PromptTokens > 0 {
			sj.prompt, sj.cached, sj.compl = ch.Usage.PromptTokens, ch.Usage.PromptTokensDetails.CachedTokens, ch.Usage.CompletionTokens
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if sj.cached <= 0 || sj.cached > sj.prompt {
		t.Fatalf("stream usage: cached_tokens %d of %d prompt tokens", sj.cached, sj.prompt)
	}

	// At service_tier flex (flex_discount 0.5 by default): the job's whole
	// money at the cached price, halved and rounded up once; what caching
	// saved is the same rounding of the input-price money less that.
	var resp *http.Response
	fx, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prefix + " question flex")},
		MaxTokens:   openai.Int(4),
		ServiceTier: openai.ChatCompletionNewParamsServiceTierFlex}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	fj := job{id: resp.Header.Get("Sluice-Job-Id"), prompt: fx.Usage.PromptTokens, cached: fx.Usage.PromptTokensDetails.CachedTokens,
		compl: fx.Usage.CompletionTokens}
	if fx.ServiceTier != openai.ChatCompletionServiceTierFlex || fj.cached <= 0 {
		t.Fatalf("flex: served at %q with %d cached tokens", fx.ServiceTier, fj.cached)
	}
	price(&fj)
	half := func(m int64) int64 { return (m + 1) / 2 }
	full := fj.want + fj.saved
	fj.want, fj.saved = half(fj.want), half(full)-half(fj.want)

	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var userID string
	if err := conn.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, email).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	// The streamed job's id: its ledger row is the one with its counts that
	// is none of the others (the stream's chunk id is the engine's).
	var total, saved, cached, prompt, compl, list, listSaved int64
	jobs = append(jobs, fj)
	for _, j := range jobs {
		if _, _, _, n := s.ledgerRow(t, j.id); n != 1 {
			t.Fatalf("job %s not settled", j.id)
		}
		var gotCached, gotOverage, gotSaved, gotPrompt int64
		if err := conn.QueryRow(ctx, `SELECT cached_tokens, overage_micros, cached_saved_micros, prompt_tokens FROM credit_ledger WHERE job_id = $1`, j.id).
			Scan(&gotCached, &gotOverage, &gotSaved, &gotPrompt); err != nil {
			t.Fatal(err)
		}
		if gotCached != j.cached || gotOverage != j.want || gotSaved != j.saved || gotPrompt != j.prompt {
			t.Fatalf("ledger row of %s: cached %d, charged %d, saved %d, prompt %d; want %d, %d (= (%d-%d)×%d + %d×%d + %d×%d), %d, %d",
				j.id, gotCached, gotOverage, gotSaved, gotPrompt, j.cached, j.want, j.prompt, j.cached, pin, j.cached, pcached, j.compl, pout, j.saved, j.prompt)
		}
		t.Logf("job %s: prompt %d (cached %d), completion %d: charged %d micro-dollars, saved %d", j.id, j.prompt, j.cached, j.compl, j.want, j.saved)
	}
	price(&sj)
	jobs = append(jobs, sj)
	for _, j := range jobs {
		total, saved, cached, prompt, compl = total+j.want, saved+j.saved, cached+j.cached, prompt+j.prompt, compl+j.compl
		list, listSaved = list+j.list, listSaved+j.listSaved
	}
	// All five rows (the streamed one settles too): the ledger's sums.
	var lTotal, lSaved, lCached int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*), COALESCE(sum(overage_micros), 0), COALESCE(sum(cached_saved_micros), 0), COALESCE(sum(cached_tokens), 0)
			FROM credit_ledger WHERE user_id = $1 AND kind = 'usage'`, userID).Scan(&n, &lTotal, &lSaved, &lCached); err != nil {
			t.Fatal(err)
		}
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d ledger rows settled, want 5", n)
		}
	}
	if lTotal != total || lSaved != saved || lCached != cached {
		t.Fatalf("ledger: charged %d, saved %d, cached %d; want %d, %d, %d", lTotal, lSaved, lCached, total, saved, cached)
	}
	t.Logf("5 jobs: %d prompt tokens (%d cached), %d completion: charged %d micro-dollars, caching saved %d", prompt, cached, compl, total, saved)

	// The rollup (every second) folds them: /v1/usage by day and by key,
	// at list price (the rollups apply no service-tier factor).
	today := time.Now().UTC().Format(time.DateOnly)
	type figures struct {
		Requests          int64
		PromptTokens      int64   `json:"prompt_tokens"`
		CompletionTokens  int64   `json:"completion_tokens"`
		CostMicros        int64   `json:"cost_micros"`
		CachedTokens      int64   `json:"cached_tokens"`
		CacheHitRate      float64 `json:"cache_hit_rate"`
		CachedSavedMicros int64   `json:"cached_saved_micros"`
	}
	rate := float64(int64(float64(cached)/float64(prompt)*1e4+0.5)) / 1e4
	want := figures{Requests: 5, PromptTokens: prompt, CompletionTokens: compl, CostMicros: list, CachedTokens: cached,
		CacheHitRate: rate, CachedSavedMicros: listSaved}
	var usage struct{ Data []figures }
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if st := s.getJSON(t, key, "/v1/usage?start="+today+"&end="+today, &usage); st != 200 {
			t.Fatalf("usage: %d", st)
		}
		if len(usage.Data) == 1 && usage.Data[0].Requests == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage not folded: %+v", usage)
		}
	}
	if usage.Data[0] != want {
		t.Fatalf("usage by day %+v, want %+v", usage.Data[0], want)
	}
	var byKey struct {
		Data []struct {
			KeyID  *string `json:"key_id"`
			Prefix string
			figures
		}
	}
	if st := s.getJSON(t, key, "/v1/usage?group_by=key&start="+today+"&end="+today, &byKey); st != 200 || len(byKey.Data) != 1 ||
		byKey.Data[0].KeyID == nil || !strings.HasPrefix(key, byKey.Data[0].Prefix) || byKey.Data[0].figures != want {
		t.Fatalf("usage by key: %d %+v, want one key with %+v", st, byKey, want)
	}

	// The statement: the same money from the ledger, the cached tokens,
	// their share and what they saved.
	var stmts struct {
		Data []struct {
			PromptTokens      int64   `json:"prompt_tokens"`
			OverageMicros     int64   `json:"overage_micros"`
			TotalDueMicros    int64   `json:"total_due_micros"`
			CachedTokens      int64   `json:"cached_tokens"`
			CacheHitRate      float64 `json:"cache_hit_rate"`
			CachedSavedMicros int64   `json:"cached_saved_micros"`
		}
	}
	if st := s.getJSON(t, key, "/v1/billing/invoices", &stmts); st != 200 || len(stmts.Data) != 1 {
		t.Fatalf("statements: %d %+v", st, stmts)
	}
	if g := stmts.Data[0]; g.PromptTokens != prompt || g.OverageMicros != total || g.TotalDueMicros != total || g.CachedTokens != cached ||
		g.CacheHitRate != rate || g.CachedSavedMicros != saved {
		t.Fatalf("statement %+v; want prompt %d, overage %d, cached %d (rate %v), saved %d", g, prompt, total, cached, rate, saved)
	}
}
