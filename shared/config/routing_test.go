package config_test

import (
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/shared/config"
)

// TestModelRouting: task defaults to generate; fallbacks must name other
// models of the same task, once each, without a cycle; an alias's versions
// share a task.
func TestModelRouting(t *testing.T) {
	t.Parallel()
	c, err := config.Parse([]byte(`inference: {models: [{name: g}, {name: g2, fallbacks: [g]}, {name: e, task: embed, fallbacks: [e2]}, {name: e2, task: embed}]}`))
	if err != nil {
		t.Fatal(err)
	}
	g, _ := c.Model("g")
	e, _ := c.Model("e")
	g2, _ := c.Model("g2")
	if g.Task != config.TaskGenerate || g.Embeds() || !e.Embeds() || len(g2.Fallbacks) != 1 || g2.Fallbacks[0] != "g" {
		t.Fatalf("parsed: g %+v, e %+v, g2 %+v", g.ModelRouting, e.ModelRouting, g2.ModelRouting)
	}
	for name, y := range map[string]string{
		"unknown task":      `{models: [{name: a, task: rerank}]}`,
		"unknown fallback":  `{models: [{name: a, fallbacks: [b]}]}`,
		"self fallback":     `{models: [{name: a, fallbacks: [a]}]}`,
		"task mismatch":     `{models: [{name: a, fallbacks: [b]}, {name: b, task: embed}]}`,
		"listed twice":      `{models: [{name: a, fallbacks: [b, b]}, {name: b}]}`,
		"two-model cycle":   `{models: [{name: a, fallbacks: [b]}, {name: b, fallbacks: [a]}]}`,
		"three-model cycle": `{models: [{name: a, fallbacks: [b]}, {name: b, fallbacks: [c]}, {name: c, fallbacks: [a]}]}`,
	} {
		_, err := config.Parse([]byte("inference: " + y))
		if err == nil {
			t.Errorf("%s: accepted %s", name, y)
			continue
		}
		if !strings.Contains(err.Error(), "inference.models[") {
			t.Errorf("%s: error does not name the model: %v", name, err)
		}
	}
	if _, err := config.Parse([]byte(`inference: {models: [{name: a}, {name: b, task: embed}]}
aliases: {x: {versions: [{model: a, weight: 1}, {model: b, weight: 1}]}}`)); err == nil || !strings.Contains(err.Error(), "aliases.x") {
		t.Errorf("alias mixing tasks: %v", err)
	}
}
