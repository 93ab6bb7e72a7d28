package config

import (
	"errors"
	"fmt"
	"slices"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// Engine scheduling policies (inference.models[].scheduling_policy).
const (
	SchedulingFCFS     = "fcfs"
	SchedulingPriority = "priority"
)

// Service tier values a request's service_tier may carry (OpenAI's).
// auto and default run at the tier's own class and price.
var ServiceTierValues = []string{"auto", sluice.TierDefault, sluice.TierFlex, sluice.TierPriority}

// PPM is a price factor's unit: parts per million (1,000,000 is × 1).
const PPM = 1_000_000

// AllowedServiceTiers lists the service_tier values a subscription tier's
// requests may use: tiers.<name>.service_tiers, else all of them except
// priority for the free tier (a free user must not buy its way ahead of
// paying ones).
func (c *Config) AllowedServiceTiers(tier string) []string {
	if t, ok := c.Tiers[tier]; ok && len(t.ServiceTiers) > 0 {
		return t.ServiceTiers
	}
	if tier == sluice.TierFree {
		return []string{"auto", sluice.TierDefault, sluice.TierFlex}
	}
	return ServiceTierValues
}

// ServiceClass is the queue class a job of a subscription tier runs in at
// service tier st (sluice.TierDefault, TierFlex, TierPriority, TierBatch):
// flex and batch run in BatchClass, priority one class above the tier's
// (never above 0), default in the tier's.
func (c *Config) ServiceClass(tier, st string) int {
	switch st {
	case sluice.TierFlex, sluice.TierBatch:
		return BatchClass
	case sluice.TierPriority:
		return max(c.TierPriority(tier)-1, 0)
	}
	return c.TierPriority(tier)
}

// factor reads an optional price factor with its default.
func factor(p *float64, def float64) float64 {
	if p == nil {
		return def
	}
	return *p
}

// CachedInputPrice is the price of a prompt token the engine served from
// its prefix cache: cached_input_tokens, or input_tokens when unset.
func (p ModelPrice) CachedInputPrice() Micros {
	if p.CachedInputTokens != nil {
		return *p.CachedInputTokens
	}
	return p.InputTokens
}

// FactorPPM is the price factor, in parts per million, that a job at
// service tier st pays of the model's prices: batch 1 − batch_discount,
// flex 1 − flex_discount, priority priority_multiplier, anything else 1.
// Rounded to the nearest ppm; charges apply it as ceil(money × ppm / 1e6)
// (admission.ApplyFactor), so no fraction of a micro-dollar is dropped.
func (p ModelPrice) FactorPPM(st string) int64 {
	var f float64
	switch st {
	case sluice.TierBatch:
		f = 1 - factor(p.BatchDiscount, 0.5)
	case sluice.TierFlex:
		f = 1 - factor(p.FlexDiscount, 0.5)
	case sluice.TierPriority:
		f = factor(p.PriorityMultiplier, 2)
	default:
		return PPM
	}
	return int64(f*PPM + 0.5)
}

func (c *Config) validateServiceTiers() error {
	var errs []error
	for i, m := range c.Inference.Models {
		if m.SchedulingPolicy != SchedulingFCFS && m.SchedulingPolicy != SchedulingPriority {
			errs = append(errs, fmt.Errorf("inference.models[%d].scheduling_policy: must be fcfs or priority, not %q", i, m.SchedulingPolicy))
		}
	}
	for name, p := range c.Pricing {
		for field, v := range map[string]*float64{"batch_discount": p.BatchDiscount, "flex_discount": p.FlexDiscount} {
			if v != nil && (*v < 0 || *v > 1) {
				errs = append(errs, fmt.Errorf("pricing.%s.%s: must be between 0 and 1", name, field))
			}
		}
		if v := p.PriorityMultiplier; v != nil && (*v < 1 || *v > 100) {
			errs = append(errs, fmt.Errorf("pricing.%s.priority_multiplier: must be between 1 and 100", name))
		}
	}
	for name, t := range c.Tiers {
		for _, st := range t.ServiceTiers {
			if !slices.Contains(ServiceTierValues, st) {
				errs = append(errs, fmt.Errorf("tiers.%s.service_tiers: unknown service tier %q (auto, default, flex, priority)", name, st))
			}
		}
	}
	if BatchClass != Priorities-1 || BatchClass < 1 {
		errs = append(errs, errors.New("config: BatchClass must be the last queue class"))
	}
	return errors.Join(errs...)
}
