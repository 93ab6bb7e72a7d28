package config

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
)

// Alias is a model name served by weighted versions (A/B tests, canaries):
// e.g. llama-2 → llama-2-7b 90, llama-2-7b-v2 10.
type Alias struct {
	Versions []AliasVersion `yaml:"versions"`
}

// AliasVersion is one version of an alias: a configured model and its share.
type AliasVersion struct {
	Model  string `yaml:"model"`  // a name in inference.models
	Weight int    `yaml:"weight"` // relative share, > 0
}

// Resolve returns the model that serves name for userID: a configured model
// is itself; an alias picks a version by weight. The pick is a hash of the
// alias and the user, not a draw per request, so a user keeps the same
// version (sticky) for as long as the weights stay.
func (c *Config) Resolve(name, userID string) (*Model, bool) {
	if m, ok := c.Model(name); ok {
		return m, true
	}
	a, ok := c.Aliases[name]
	if !ok {
		return nil, false
	}
	total := 0
	for _, v := range a.Versions {
		total += v.Weight
	}
	if total <= 0 {
		return nil, false
	}
	h := fnv.New64a()
	h.Write([]byte(name + "\x00" + userID)) //nolint:errcheck // never fails
	pick := int(h.Sum64() % uint64(total))
	for _, v := range a.Versions {
		if pick < v.Weight {
			return c.Model(v.Model)
		}
		pick -= v.Weight
	}
	return nil, false
}

// ForUser is the model lookup one user's requests see: aliases resolved.
func (c *Config) ForUser(userID string) UserModels { return UserModels{c: c, user: userID} }

// UserModels resolves model names and aliases for one user.
type UserModels struct {
	c    *Config
	user string
}

// Model resolves name for the user.
func (u UserModels) Model(name string) (*Model, bool) { return u.c.Resolve(name, u.user) }

func (c *Config) validateAliases() error {
	var errs []error
	names := make([]string, 0, len(c.Aliases))
	for n := range c.Aliases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := c.Aliases[n]
		if _, ok := c.Model(n); ok {
			errs = append(errs, fmt.Errorf("aliases.%s: is also a model name", n))
		}
		if len(a.Versions) == 0 {
			errs = append(errs, fmt.Errorf("aliases.%s.versions: at least one is required", n))
		}
		for i, v := range a.Versions {
			if _, ok := c.Model(v.Model); !ok {
				errs = append(errs, fmt.Errorf("aliases.%s.versions[%d].model: %q is not in inference.models", n, i, v.Model))
			}
			if v.Weight <= 0 {
				errs = append(errs, fmt.Errorf("aliases.%s.versions[%d].weight: must be positive", n, i))
			}
		}
	}
	return errors.Join(errs...)
}
