package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/config"
)

func TestDefaultsAreTheDesign(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Jobs.Shards != 1 {
		t.Fatalf("jobs.shards = %d, want 1 (the unsharded key names)", c.Jobs.Shards)
	}
	if m, ok := c.Model("llama-2-7b"); !ok || m.Replicas != 3 || m.MaxBatchSize != 32 || m.GPUMemory != "16GB" {
		t.Fatalf("llama-2-7b = %+v", m)
	}
	if m, ok := c.Model("mistral-7b"); !ok || m.Replicas != 2 || m.MaxBatchSize != 16 {
		t.Fatalf("mistral-7b = %+v", m)
	}
	// Prices exactly in micro-dollars per token.
	want := map[string][2]config.Micros{"llama-2-7b": {100, 200}, "mistral-7b": {150, 300}}
	for name, w := range want {
		p := c.Pricing[name]
		if p.InputTokens != w[0] || p.OutputTokens != w[1] {
			t.Errorf("pricing %s = %+v, want %v", name, p, w)
		}
	}
	free, pro, ent := c.Tiers["free"], c.Tiers["pro"], c.Tiers["enterprise"]
	if free.IncludedCredits.Count() != 100000 || free.RateLimit.Count() != 10 || free.MonthlyCost.Money() != 0 {
		t.Errorf("free = %+v", free)
	}
	if pro.MonthlyCost.Money() != 29_000_000 || pro.IncludedCredits.Count() != 1000000 || pro.RateLimit.Count() != 100 {
		t.Errorf("pro = %+v", pro)
	}
	if ent.MonthlyCost.Kind != config.Custom || ent.IncludedCredits.Kind != config.Unlimited || ent.RateLimit.Kind != config.Custom {
		t.Errorf("enterprise = %+v", ent)
	}
	if got := c.Permissions("developer"); strings.Join(got, ",") != "model:read,model:write,inference:execute" {
		t.Errorf("developer permissions = %v", got)
	}
	if c.Auth.Session.Timeout != 3600 || !c.Auth.Session.RefreshEnabled || c.Auth.Provider != "sluice" {
		t.Errorf("auth = %+v", c.Auth)
	}
	if c.Autoscaling["api_gateway"].MinReplicas != 3 || c.Autoscaling["inference"].MaxReplicas != 10 {
		t.Errorf("autoscaling = %+v", c.Autoscaling)
	}
	if c.TierPriority("enterprise") != 0 || c.TierPriority("pro") != 1 || c.TierPriority("free") != 2 {
		t.Error("tier priorities")
	}
}

func TestOverlay(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(`
inference:
  models:
    - name: tiny
      endpoints: ["http://10.0.0.1:8000/"]
pricing:
  tiny: {input_tokens: 0.000001, output_tokens: 2e-6, per_request: 0.002, per_gpu_second: 0.0005}
tiers:
  pro: {monthly_cost: 49, included_credits: 5000000, rate_limit: 300}
`))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := c.Model("tiny")
	if m.MaxBatchSize != 16 || m.MaxModelLen != 4096 || m.Endpoints[0] != "http://10.0.0.1:8000" || m.Engine != "vllm" {
		t.Fatalf("model defaults: %+v", m)
	}
	if _, ok := c.Pricing["llama-2-7b"]; ok {
		t.Fatal("default price of a model no longer served was kept")
	}
	if p := c.Pricing["tiny"]; p.InputTokens != 1 || p.OutputTokens != 2 || p.PerRequest != 2000 || p.PerGPUSecond != 500 {
		t.Fatalf("tiny pricing = %+v", p)
	}
	if c.Tiers["pro"].MonthlyCost.Money() != 49_000_000 || c.Tiers["free"].RateLimit.Count() != 10 {
		t.Fatalf("tiers overlay = %+v", c.Tiers)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, y := range map[string]string{
		"sub-micro price":     "pricing: {llama-2-7b: {input_tokens: 0.0000001, output_tokens: 1}}",
		"negative price":      "pricing: {llama-2-7b: {input_tokens: -1, output_tokens: 1}}",
		"price not a number":  "pricing: {llama-2-7b: {input_tokens: cheap, output_tokens: 1}}",
		"price unknown model": "pricing: {gpt-9: {input_tokens: 1, output_tokens: 1}}",
		"misspelt key":        "inferense: {}",
		"fractional limit":    "tiers: {free: {rate_limit: 1.5}}",
		"unlimited cost":      "tiers: {free: {monthly_cost: unlimited}}",
		"bad engine":          "inference: {models: [{name: a, engine: magic}]}",
		"bad endpoint":        "inference: {models: [{name: a, endpoints: [ftp://x]}]}",
		"duplicate model":     "inference: {models: [{name: a}, {name: a}]}",
		"brace in name":       "inference: {models: [{name: 'a{b}'}]}",
		"bar in name":         "inference: {models: [{name: 'a|b'}]}",
		"sub-micro gpu price": "pricing: {llama-2-7b: {input_tokens: 1, output_tokens: 1, per_gpu_second: 0.0000005}}",
		"negative per req":    "pricing: {llama-2-7b: {input_tokens: 1, output_tokens: 1, per_request: -0.01}}",
		"unknown role perms":  "auth: {rbac: {permissions: {root: ['*']}}}",
		"no models":           "inference: {models: []}",
		"negative shards":     "jobs: {shards: -1}",
		"too many shards":     "jobs: {shards: 257}",
	} {
		if _, err := config.Parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted %q", name, y)
		}
	}
}

func TestParseMicros(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]config.Micros{
		"0": 0, "29": 29_000_000, "0.0001": 100, "0.00015": 150, "1.5e-4": 150, "$2.50": 2_500_000,
		"0.000001": 1, "1e3": 1_000_000_000, ".5": 500_000, "10.000000": 10_000_000,
	} {
		got, err := config.ParseMicros(in)
		if err != nil || got != want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1.0000001", "abc", "1e-7", "-3", "1e40", "99999999999999999999", "0x10", "1.2.3"} {
		if _, err := config.ParseMicros(in); err == nil {
			t.Errorf("ParseMicros(%q) accepted", in)
		}
	}
	if s := config.Micros(150).String(); s != "0.00015" {
		t.Errorf("String = %s", s)
	}
}

func FuzzParseMicros(f *testing.F) {
	for _, s := range []string{"0.0001", "29", "1e-6", "$1", "-1", "1e30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := config.ParseMicros(s)
		if err != nil {
			return
		}
		if m < 0 {
			t.Fatalf("ParseMicros(%q) = %d < 0", s, m)
		}
		// Round trip: the formatted value parses to the same micros.
		if back, err := config.ParseMicros(m.String()); err != nil || back != m {
			t.Fatalf("round trip %q → %d → %q → %d, %v", s, m, m.String(), back, err)
		}
	})
}

// An alias splits users between its versions by weight, each user always
// getting the same version.
func TestAliasesAreWeightedAndSticky(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte(`
inference:
  models:
    - {name: llama-2-7b, endpoints: ["http://127.0.0.1:1"]}
    - {name: llama-2-7b-v2, endpoints: ["http://127.0.0.1:2"]}
pricing: null
aliases:
  llama-2: {versions: [{model: llama-2-7b, weight: 90}, {model: llama-2-7b-v2, weight: 10}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for i := range 10000 {
		user := fmt.Sprintf("user-%d", i)
		m, ok := cfg.Resolve("llama-2", user)
		if !ok {
			t.Fatal("alias not resolved")
		}
		for range 3 {
			if again, _ := cfg.ForUser(user).Model("llama-2"); again.Name != m.Name {
				t.Fatalf("user %s moved from %s to %s", user, m.Name, again.Name)
			}
		}
		counts[m.Name]++
	}
	if v2 := counts["llama-2-7b-v2"]; v2 < 850 || v2 > 1150 {
		t.Fatalf("split %v, want about 90/10", counts)
	}
	if m, ok := cfg.Resolve("llama-2-7b", "u"); !ok || m.Name != "llama-2-7b" {
		t.Fatal("a model name resolves to itself")
	}
	for _, bad := range []string{
		"aliases: {x: {versions: [{model: nope, weight: 1}]}}",
		"aliases: {x: {versions: [{model: llama-2-7b, weight: 0}]}}",
		"aliases: {llama-2-7b: {versions: [{model: llama-2-7b, weight: 1}]}}",
		"aliases: {x: {versions: []}}",
	} {
		if _, err := config.Parse([]byte("inference: {models: [{name: llama-2-7b}]}\npricing: null\n" + bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestTelemetryConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	tel := cfg.Telemetry
	if tel.MetricsOff || tel.Tracing.Enabled || tel.Tracing.SampleRatio != 1 || tel.TopUsers != 10 ||
		tel.BusinessRefresh != time.Minute || cfg.Worker.Listen != ":9464" {
		t.Errorf("defaults: %+v, worker.listen %q", tel, cfg.Worker.Listen)
	}
	for _, bad := range []string{
		"telemetry:\n  tracing:\n    sample_ratio: 1.5\n",
		"telemetry:\n  tracing:\n    endpoint: jaeger:4318\n",
		"telemetry:\n  top_users: 1000\n",
	} {
		if _, err := config.Parse([]byte(bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

// The billing block: defaults, and every bad value refused with its key.
func TestBillingBlock(t *testing.T) {
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Billing
	if b.PaymentGrace != 72*time.Hour || b.SuccessURL == "" || len(b.TierPrices) != 0 {
		t.Fatalf("defaults: %+v", b)
	}
	if p, ok := b.CreditPack("usd_10"); !ok || p.Amount != 10_000_000 {
		t.Fatalf("usd_10 = %+v %v", p, ok)
	}
	good, err := config.Parse([]byte("billing:\n  tier_prices: {pro: price_1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tier, ok := good.Billing.TierOfPrice("price_1"); !ok || tier != "pro" {
		t.Fatalf("TierOfPrice = %q %v", tier, ok)
	}
	for yaml, want := range map[string]string{
		"billing:\n  tier_prices: {gold: price_1}\n":                               "billing.tier_prices.gold: no such tier",
		"billing:\n  tier_prices: {pro: prod_1}\n":                                 "is not a Stripe price id",
		"billing:\n  tier_prices: {free: price_1}\n":                               "the free tier is not sold",
		"billing:\n  credit_packs: [{name: x, amount: 1.005}]\n":                   "whole cents",
		"billing:\n  credit_packs: [{name: x, amount: 1}, {name: x, amount: 2}]\n": "listed twice",
		"billing:\n  payment_grace: -1h\n":                                         "payment_grace: must not be negative",
		"billing:\n  success_url: ftp://x\n":                                       "billing.success_url",
	} {
		if _, err := config.Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
}

// TestEngineInput: a model's prompt-bound settings default and validate.
func TestEngineInput(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte("inference: {models: [{name: m}, {name: v, template_overhead_tokens: 1, media: {image: 600}, allow: [echo]}]}"))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := c.Model("m")
	v, _ := c.Model("v")
	if m.TemplateOverheadTokens != 128 || m.ToolsOverheadTokens != 512 || m.TemplateJSONIndent != 4 || m.Media.Image != 0 || m.Allows("echo") {
		t.Fatalf("defaults: %+v", m.EngineInput)
	}
	if v.TemplateOverheadTokens != 1 || v.Media.Image != 600 || !v.Allows("echo") || v.Allows("chat_template") {
		t.Fatalf("set: %+v", v.EngineInput)
	}
	for _, bad := range []string{"allow: [logits_processors]", "media: {audio: -1}", "template_json_indent: 40", "tools_overhead_tokens: -1"} {
		if _, err := config.Parse([]byte("inference: {models: [{name: m, " + bad + "}]}")); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestSyncRetention: a delivered synchronous job is kept 15m by default
// (never longer than jobs.result_ttl), and a retention past result_ttl or
// not positive is refused.
func TestSyncRetention(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil)
	if err != nil || c.Jobs.SyncRetention != 15*time.Minute || c.Jobs.ResultTTL != 24*time.Hour {
		t.Fatalf("defaults: %v %v %v", c.Jobs.SyncRetention, c.Jobs.ResultTTL, err)
	}
	if c, err := config.Parse([]byte("jobs: {result_ttl: 5m}\n")); err != nil || c.Jobs.SyncRetention != 5*time.Minute {
		t.Fatalf("a short result_ttl caps the default: %v %v", c.Jobs.SyncRetention, err)
	}
	for _, bad := range []string{"jobs: {sync_retention: 2h, result_ttl: 1h}\n", "jobs: {sync_retention: -1m}\n", "jobs: {result_ttl: -1m}\n"} {
		if _, err := config.Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "sync_retention") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestRedisWait: WAIT is off by default with a 100ms bound, and its
// settings are validated.
func TestRedisWait(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.WaitReplicas != 0 || c.Redis.WaitTimeout != 100*time.Millisecond {
		t.Fatalf("defaults: %+v", c.Redis)
	}
	if c, err = config.Parse([]byte("redis: {wait_replicas: 1, wait_timeout: 250ms}")); err != nil || c.Redis.WaitReplicas != 1 || c.Redis.WaitTimeout != 250*time.Millisecond {
		t.Fatalf("set: %+v, %v", c.Redis, err)
	}
	for y, want := range map[string]string{
		"redis: {wait_replicas: -1}":    "redis.wait_replicas",
		"redis: {wait_timeout: 500us}":  "redis.wait_timeout",
		"redis: {wait_timeout: -1s}":    "redis.wait_timeout",
		"redis: {wait_replicas: a lot}": "a lot",
	} {
		if _, err := config.Parse([]byte(y)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", y, err, want)
		}
	}
}

// TestCachedInputPrice: cached_input_tokens defaults to input_tokens, may
// be 0 (free), and may not exceed input_tokens (the hold's price) or be
// negative.
func TestCachedInputPrice(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Pricing["llama-2-7b"]; p.CachedInputPrice() != p.InputTokens {
		t.Fatalf("unset cached price = %d, want input %d", p.CachedInputPrice(), p.InputTokens)
	}
	for y, want := range map[string]config.Micros{
		"pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: 0.000025}}": 25,
		"pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: 0}}":        0,
		"pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: 0.0001}}":   100,
	} {
		c, err := config.Parse([]byte(y))
		if err != nil {
			t.Fatalf("%s: %v", y, err)
		}
		if got := c.Pricing["llama-2-7b"].CachedInputPrice(); got != want {
			t.Errorf("%s: cached price %d, want %d", y, got, want)
		}
	}
	if _, err := config.Parse([]byte("pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: 0.0002}}")); err == nil ||
		!strings.Contains(err.Error(), "cached_input_tokens: must be 0 to input_tokens") {
		t.Errorf("dearer than input: err %v", err)
	}
	for _, y := range []string{
		"pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: -0.00001}}",
		"pricing: {llama-2-7b: {input_tokens: 0.0001, output_tokens: 1, cached_input_tokens: 0.0000001}}",
	} {
		if _, err := config.Parse([]byte(y)); err == nil {
			t.Errorf("%s: accepted", y)
		}
	}
}
