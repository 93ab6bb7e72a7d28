package config

import (
	"errors"
	"fmt"
	"strings"
)

// Adapter is a LoRA adapter served on its parent model's endpoints
// (inference.models[].adapters). To clients it is a model of its own: it
// has its own name in /v1/models (with its parent), key allowlists,
// pricing (pricing.<name>, by default the parent's), usage rows and queue;
// its jobs run only on the parent's endpoints that list it.
type Adapter struct {
	// Name is the model name clients send and /v1/models lists; the
	// engine's lora_name.
	Name string `yaml:"name"`
	// Source is where the engine loads the adapter from (vLLM's
	// lora_path, a folder the engine can read): what --lora-modules names
	// for an engine started with it, and what POST /v1/load_lora_adapter
	// is given when the worker loads it.
	Source string `yaml:"source"`
	// Version is the signed artifact version of the adapter (published
	// with `sluice model publish --name <name> --version <version>` under
	// storage.model_prefix). Only an adapter with a version is ever loaded
	// at run time: the worker first verifies its manifest's signature
	// under inference.adapter_public_key and every file's checksum,
	// writing the files to Source. Empty: the adapter is served only
	// where an engine was started with it.
	Version string `yaml:"version"`
}

// adapterModel is the model an adapter's requests see: its parent's
// settings (engine, endpoints, context, batch, task, input bounds) under
// the adapter's name. No fallbacks: those are the parent's choice.
func adapterModel(parent Model, a Adapter) Model {
	m := parent
	m.Name = a.Name
	m.Parent = parent.Name
	m.Adapters = nil
	m.Fallbacks = nil
	m.Endpoints = append([]string(nil), parent.Endpoints...)
	return m
}

// applyAdapterDefaults builds the adapters' models (found by Model) and
// gives each adapter its parent's price unless pricing names it.
func (c *Config) applyAdapterDefaults() {
	c.adapters = nil
	for i := range c.Inference.Models {
		def(&c.Inference.Models[i].MaxLoRAs, 1) // vLLM's --max-loras default
	}
	for _, m := range c.Inference.Models {
		for _, a := range m.Adapters {
			c.adapters = append(c.adapters, adapterModel(m, a))
			if _, ok := c.Pricing[a.Name]; ok {
				continue
			}
			if p, ok := c.Pricing[m.Name]; ok {
				if c.Pricing == nil {
					c.Pricing = map[string]ModelPrice{}
				}
				c.Pricing[a.Name] = p
			}
		}
	}
}

// isAdapter reports whether name is a configured adapter (usable before
// the defaults are applied).
func (c *Config) isAdapter(name string) bool {
	for _, m := range c.Inference.Models {
		for _, a := range m.Adapters {
			if a.Name == name {
				return true
			}
		}
	}
	return false
}

// adapter returns the model of the named adapter.
func (c *Config) adapter(name string) (*Model, bool) {
	for i := range c.adapters {
		if c.adapters[i].Name == name {
			return &c.adapters[i], true
		}
	}
	return nil, false
}

// AdapterModels returns the adapters' models of parent, in configuration
// order: what the worker runs beside the parent on its endpoints.
func (c *Config) AdapterModels(parent string) []Model {
	var out []Model
	for _, m := range c.adapters {
		if m.Parent == parent {
			out = append(out, m)
		}
	}
	return out
}

// AdapterOf returns the configuration of the adapter named name.
func (c *Config) AdapterOf(name string) (Adapter, bool) {
	for _, m := range c.Inference.Models {
		for _, a := range m.Adapters {
			if a.Name == name {
				return a, true
			}
		}
	}
	return Adapter{}, false
}

// validateAdapters: every adapter has a name no model or other adapter
// has (validateAliases keeps aliases off it), in the characters a model name may use, and a source.
func (c *Config) validateAdapters() error {
	var errs []error
	seen := map[string]string{}
	for _, m := range c.Inference.Models {
		seen[m.Name] = "a model name"
	}
	for i, m := range c.Inference.Models {
		if m.MaxLoRAs < 1 {
			errs = append(errs, fmt.Errorf("inference.models[%d].max_loras: must be positive", i))
		}
		for j, a := range m.Adapters {
			where := fmt.Sprintf("inference.models[%d].adapters[%d]", i, j)
			switch {
			case a.Name == "":
				errs = append(errs, fmt.Errorf("%s.name: required", where))
			case seen[a.Name] != "":
				errs = append(errs, fmt.Errorf("%s.name: %q is already %s", where, a.Name, seen[a.Name]))
			case strings.ContainsAny(a.Name, "{}:| \t\n"):
				errs = append(errs, fmt.Errorf("%s.name: %q may not contain braces, colons, '|' or spaces", where, a.Name))
			}
			seen[a.Name] = "an adapter name"
			if a.Source == "" {
				errs = append(errs, fmt.Errorf("%s.source: required (the engine's lora_path)", where))
			}
			if a.Version != "" && c.Inference.AdapterPublicKey == "" {
				errs = append(errs, fmt.Errorf("%s.version: needs inference.adapter_public_key to verify it", where))
			}
		}
	}
	return errors.Join(errs...)
}

// QueueModels names every model with a queue of its own: the configured
// models, then their adapters. What must see every queue (settlement, the
// queue metrics, account erasure) ranges over these, not over
// inference.models alone.
func (c *Config) QueueModels() []string {
	out := make([]string, 0, len(c.Inference.Models)+len(c.adapters))
	for _, m := range c.Inference.Models {
		out = append(out, m.Name)
	}
	for _, m := range c.adapters {
		out = append(out, m.Name)
	}
	return out
}
