package config_test

import (
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
)

// TestAdapters: an adapter is found by Model under its own name with its
// parent's settings and no fallbacks; it costs its parent's price unless
// pricing names it; max_loras defaults to vLLM's 1; names collide with
// nothing, and a version needs the key that verifies it.
func TestAdapters(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(`
inference:
  models:
    - {name: base, max_model_len: 2048, endpoints: ["http://e1"], fallbacks: [other], adapters: [{name: sql, source: /a/sql}, {name: cheap, source: /a/cheap}]}
    - {name: other}
pricing:
  base: {input_tokens: 0.000002, output_tokens: 0.000004}
  cheap: {input_tokens: 0.000001, output_tokens: 0.000001}
`))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := c.Model("sql")
	if !ok || m.Parent != "base" || m.MaxModelLen != 2048 || len(m.Endpoints) != 1 || len(m.Fallbacks) != 0 || m.MaxLoRAs != 1 {
		t.Fatalf("sql: %+v %v", m, ok)
	}
	if p := c.Pricing["sql"]; p.InputTokens != 2 || p.OutputTokens != 4 {
		t.Fatalf("sql price %+v, want the parent's", p)
	}
	if p := c.Pricing["cheap"]; p.InputTokens != 1 || p.OutputTokens != 1 {
		t.Fatalf("cheap price %+v, want its own", p)
	}
	if got := c.AdapterModels("base"); len(got) != 2 || got[0].Name != "sql" || got[1].Name != "cheap" {
		t.Fatalf("AdapterModels: %+v", got)
	}
	if b, _ := c.Model("base"); b.Parent != "" || b.MaxLoRAs != 1 {
		t.Fatalf("base: %+v", b)
	}

	for _, bad := range []struct{ yaml, want string }{
		{`inference: {models: [{name: a, adapters: [{name: a, source: x}]}]}`, `"a" is already a model name`},
		{`inference: {models: [{name: a, adapters: [{name: x, source: s}]}, {name: b, adapters: [{name: x, source: s}]}]}`, `"x" is already an adapter name`},
		{`inference: {models: [{name: a, adapters: [{name: x}]}]}`, `source: required`},
		{`inference: {models: [{name: a, adapters: [{name: "x:y", source: s}]}]}`, `may not contain`},
		{`inference: {models: [{name: a, adapters: [{name: x, source: s, version: v1}]}]}`, `adapter_public_key`},
		{`inference: {models: [{name: a, adapters: [{name: x, source: s}]}]}
aliases: {x: {versions: [{model: a, weight: 1}]}}`, `aliases.x: is also a model name`},
		{`inference: {models: [{name: a, max_loras: -1}]}`, `max_loras: must be positive`},
	} {
		if _, err := config.Parse([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want %q", bad.yaml, err, bad.want)
		}
	}
}
