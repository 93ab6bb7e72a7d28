package config

import (
	"errors"
	"fmt"
	"slices"
)

// Model tasks: what kind of request a model serves.
const (
	// TaskGenerate models serve /v1/chat/completions and /v1/completions.
	TaskGenerate = "generate"
	// TaskEmbed models serve /v1/embeddings only.
	TaskEmbed = "embed"
)

// ModelRouting is what a model serves and where its requests go when it
// cannot take them (inference.models[].task, .fallbacks).
type ModelRouting struct {
	// Task is generate (the default) or embed: a request of the other kind
	// is refused with a 400 before it is admitted, since an engine started
	// for one task answers the other's route with an error or nonsense.
	Task string `yaml:"task"`
	// Fallbacks are models, in order of preference, that serve this model's
	// requests while it has no healthy endpoint or its queue is full
	// (no_capacity): the first one the caller's key may use and that can
	// take the request. Same task; not followed transitively (list every
	// model to try here); no cycles. Empty (the default): no fallback.
	Fallbacks []string `yaml:"fallbacks"`
}

// Embeds reports whether the model serves embeddings (task embed).
func (r ModelRouting) Embeds() bool { return r.Task == TaskEmbed }

func (c *Config) applyRoutingDefaults() {
	for i := range c.Inference.Models {
		def(&c.Inference.Models[i].Task, TaskGenerate)
	}
}

// validateRouting checks tasks and fallbacks: each fallback is another
// configured model of the same task, listed once, and following fallbacks
// never leads back to where it started. An alias's versions share a task.
func (c *Config) validateRouting() error {
	var errs []error
	for i, m := range c.Inference.Models {
		where := fmt.Sprintf("inference.models[%d]", i)
		if m.Task != TaskGenerate && m.Task != TaskEmbed {
			errs = append(errs, fmt.Errorf("%s.task: %q is not generate or embed", where, m.Task))
		}
		for j, f := range m.Fallbacks {
			fm, ok := c.Model(f)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%s.fallbacks[%d]: %q is not in inference.models", where, j, f))
			case f == m.Name:
				errs = append(errs, fmt.Errorf("%s.fallbacks[%d]: a model cannot fall back to itself", where, j))
			case fm.Task != m.Task:
				errs = append(errs, fmt.Errorf("%s.fallbacks[%d]: %q serves task %s, %s serves %s", where, j, f, fm.Task, m.Name, m.Task))
			case slices.Contains(m.Fallbacks[:j], f):
				errs = append(errs, fmt.Errorf("%s.fallbacks[%d]: %q listed twice", where, j, f))
			}
		}
		if cyc := c.fallbackCycle(m.Name); cyc != nil {
			errs = append(errs, fmt.Errorf("%s.fallbacks: cycle %v", where, cyc))
		}
	}
	for name, a := range c.Aliases {
		task := ""
		for _, v := range a.Versions {
			if m, ok := c.Model(v.Model); ok {
				if task != "" && m.Task != task {
					errs = append(errs, fmt.Errorf("aliases.%s.versions: mix tasks %s and %s", name, task, m.Task))
					break
				}
				task = m.Task
			}
		}
	}
	return errors.Join(errs...)
}

// fallbackCycle returns a path of fallbacks from start back to start, or
// nil when there is none.
func (c *Config) fallbackCycle(start string) []string {
	var path []string
	seen := map[string]bool{}
	var walk func(name string) bool
	walk = func(name string) bool {
		m, ok := c.Model(name)
		if !ok {
			return false
		}
		for _, f := range m.Fallbacks {
			if f == name { // reported on its own
				continue
			}
			if f == start {
				path = append(path, f)
				return true
			}
			if seen[f] {
				continue
			}
			seen[f] = true
			path = append(path, f)
			if walk(f) {
				return true
			}
			path = path[:len(path)-1]
		}
		return false
	}
	if walk(start) {
		return append([]string{start}, path...)
	}
	return nil
}
