package openai_test

import (
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestEchoServiceTier: the engine's service_tier (null, or missing) is
// replaced by the tier that served, in bodies, chunks and Responses
// events; text that merely mentions the key is left alone.
func TestEchoServiceTier(t *testing.T) {
	for _, c := range []struct{ in, tier, want string }{
		{`{"id":"x","service_tier":null,"choices":[]}`, "flex", `{"id":"x","service_tier":"flex","choices":[]}`},
		{`{"id":"x","service_tier": "default"}`, "priority", `{"id":"x","service_tier": "priority"}`},
		{`{"id":"x","choices":[{"delta":{"content":"say \"service_tier\":null"}}]}`, "flex",
			`{"service_tier":"flex","id":"x","choices":[{"delta":{"content":"say \"service_tier\":null"}}]}`},
		{`{}`, "flex", `{"service_tier":"flex"}`},
		{`{"id":"x"}`, "", `{"service_tier":"default","id":"x"}`},
		{`{"id":"x"}`, sluice.TierBatch, `{"service_tier":"default","id":"x"}`},
		{`{"type":"response.created","response":{"id":"r"}}`, "flex", `{"type":"response.created","response":{"service_tier":"flex","id":"r"}}`},
		{`{"type":"response.output_text.delta","delta":"hi"}`, "flex", `{"type":"response.output_text.delta","delta":"hi"}`},
		{`[1]`, "flex", `[1]`},
	} {
		if got := string(openai.EchoServiceTier([]byte(c.in), c.tier)); got != c.want {
			t.Errorf("EchoServiceTier(%s, %q) = %s, want %s", c.in, c.tier, got, c.want)
		}
	}
}

// TestServiceTierParse: the field is checked, read, and never upstream.
func TestServiceTierParse(t *testing.T) {
	cfg, err := config.Parse([]byte("inference: {models: [{name: m, max_model_len: 1024}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"service_tier":"flex"}`),
		cfg, openai.Limits{BytesPerTokenFloor: 32})
	if err != nil || req.ServiceTier != "flex" {
		t.Fatalf("%+v %v", req, err)
	}
	if string(req.Upstream) != `{"model":"m","messages":[{"role":"user","content":"hi"}]}` {
		t.Fatalf("upstream %s", req.Upstream)
	}
	for _, bad := range []string{`"scale"`, `""`, `1`, `["flex"]`} {
		_, err := openai.Parse(sluice.EndpointCompletion, []byte(`{"model":"m","prompt":"hi","service_tier":`+bad+`}`), cfg, openai.Limits{})
		if e := sluice.AsError(err); e == nil || e.Param != "service_tier" || e.Code != sluice.CodeInvalidValue {
			t.Fatalf("service_tier %s: %v", bad, err)
		}
	}
	if _, err := openai.Parse(sluice.EndpointChat, []byte(`{"model":"m","messages":[],"Service_tier":"flex","service_tier":"flex"}`), cfg, openai.Limits{}); err == nil {
		t.Fatal("a case-variant duplicate was accepted")
	}
	for tier, want := range map[string]bool{"free": false, "pro": true} {
		if _, err := openai.AllowServiceTier(cfg, tier, "priority"); (err == nil) != want {
			t.Fatalf("%s priority: %v", tier, err)
		}
	}
	if st, err := openai.AllowServiceTier(cfg, "free", "auto"); err != nil || st != sluice.TierDefault {
		t.Fatalf("free auto: %q %v", st, err)
	}
}
