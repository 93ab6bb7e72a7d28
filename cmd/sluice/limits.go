package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func init() {
	commands["limits"] = command{
		usage: `limits show --email E | limits set --email E [--rpm N] [--tpm N] [--concurrency N] [--overage-cap 50.00]   per-user limit overrides (0 clears)`,
		run:   func(ctx context.Context, args []string, e env) error { return limits(ctx, args, e) },
	}
}

// limits shows or sets a user's limit overrides, as the admin API's PATCH
// /auth/v1/admin/users/{id} does: audited, and broadcast so every
// instance's verifier applies them at once.
func limits(ctx context.Context, args []string, e env) error {
	var up postgres.LimitsUpdate
	flags := func(verb string, fs *flag.FlagSet) {
		if verb != "set" {
			return
		}
		count := func(name, usage, set string, to *int64) {
			fs.Func(name, usage+" (0 clears the override)", func(s string) error {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return errors.New("want a whole number, 0 to clear")
				}
				*to = n
				up.Set = append(up.Set, set)
				return nil
			})
		}
		count("rpm", "requests per minute", postgres.LimitRPM, &up.To.RequestsPerMinute)
		count("tpm", "tokens per minute", postgres.LimitTPM, &up.To.TokensPerMinute)
		count("concurrency", "requests in flight at once", postgres.LimitConcurrency, &up.To.Concurrency)
		fs.Func("overage-cap", "postpaid dollars per month, e.g. 50.00 (0 clears the override)", func(s string) error {
			m, err := config.ParseMicros(s)
			if err != nil || m < 0 {
				return errors.New("want a dollar amount with at most 6 decimals, 0 to clear")
			}
			up.To.OverageCap = int64(m)
			up.Set = append(up.Set, postgres.LimitCap)
			return nil
		})
	}
	return userCommand(ctx, e, args,
		"usage: sluice limits show --email E | sluice limits set --email E [--rpm N] [--tpm N] [--concurrency N] [--overage-cap 50.00]",
		[]string{"show", "set"}, flags, func(verb string, d *app.Deps, u sluice.User) error {
			if verb == "set" {
				var err error
				if u, err = updateUser(ctx, e, d, u.ID, postgres.UserUpdate{Limits: up}, func(sluice.User) map[string]any {
					return map[string]any{"limits": up.To, "set": up.Set}
				}); err != nil {
					return err
				}
			}
			printLimits(e, d.Config, u)
			return nil
		})
}

// printLimits prints a user's effective limits and where each comes from.
func printLimits(e env, cfg *config.Config, u sluice.User) {
	eff := admission.EffectiveLimits(cfg, u.Tier, u.Limits)
	from := func(override int64) string {
		if override > 0 {
			return " (override)"
		}
		return " (tier)"
	}
	show := func(n, override int64) string {
		if n < 0 {
			return "unlimited" + from(override)
		}
		return strconv.FormatInt(n, 10) + from(override)
	}
	ovCap := "none (the tier has no postpaid overage)"
	if eff.OverageCap > 0 {
		ovCap = "$" + config.Micros(eff.OverageCap).String() + from(u.Limits.OverageCap)
	}
	fmt.Fprintf(e.stdout, "%s (tier %s): requests/min %s, tokens/min %s, concurrency %s, overage cap %s\n", u.Email, u.Tier,
		show(eff.RequestsPerMinute, u.Limits.RequestsPerMinute), show(eff.TokensPerMinute, u.Limits.TokensPerMinute),
		show(eff.Concurrency, u.Limits.Concurrency), ovCap)
}
