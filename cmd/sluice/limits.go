package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
)

func init() {
	commands["limits"] = command{
		`limits show --email E | limits set --email E [--rpm N] [--tpm N] [--concurrency N] [--overage-cap 50.00]   per-user limit overrides (0 clears)`,
		func(ctx context.Context, args []string, e env) error { return limits(ctx, args, e) },
	}
}

// limits shows or sets a user's limit overrides, as the admin API's PATCH
// /auth/v1/admin/users/{id} does: audited, and broadcast so every
// instance's verifier applies them at once.
func limits(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "set") {
		return errors.New("usage: sluice limits show --email E | sluice limits set --email E [--rpm N] [--tpm N] [--concurrency N] [--overage-cap 50.00]")
	}
	fs := flag.NewFlagSet("limits "+args[0], flag.ContinueOnError)
	email := fs.String("email", "", "the user's email")
	var up postgres.LimitsUpdate
	count := func(name, usage string, set string, to *int64) {
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
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("--email is required")
	}
	d, cleanup, err := openEnv(ctx, e.log, e.getenv)
	if err != nil {
		return err
	}
	defer cleanup()
	u, err := d.DB.UserByEmail(ctx, *email)
	if err != nil {
		return fmt.Errorf("user %s: %w", *email, err)
	}
	if args[0] == "set" {
		if u, err = d.DB.UpdateUser(ctx, u.ID, postgres.UserUpdate{Limits: up}); err != nil {
			return err
		}
		if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "admin.user_update", Target: u.ID, Outcome: "ok",
			Remote: "cli", Detail: map[string]any{"limits": up.To, "set": up.Set}}); err != nil {
			return err
		}
		if err := authn.RevokeUser(ctx, d.Redis, u.ID); err != nil {
			fmt.Fprintf(e.stdout, "saved; the broadcast failed, so it applies within the verifier's cache TTL: %v\n", err)
		}
	}
	eff := admission.EffectiveLimits(d.Config, u.Tier, u.Limits)
	show := func(n int64) string {
		if n < 0 {
			return "unlimited"
		}
		return strconv.FormatInt(n, 10)
	}
	over := func(n int64) string {
		if n == 0 {
			return "tier"
		}
		return "override"
	}
	l := u.Limits
	ovCap := "none (the tier has no postpaid overage)"
	if eff.OverageCap > 0 {
		ovCap = fmt.Sprintf("$%s (%s)", config.Micros(eff.OverageCap), over(l.OverageCap))
	}
	fmt.Fprintf(e.stdout, "%s (tier %s): requests/min %s (%s), tokens/min %s (%s), concurrency %s (%s), overage cap %s\n",
		u.Email, u.Tier, show(eff.RequestsPerMinute), over(l.RequestsPerMinute), show(eff.TokensPerMinute), over(l.TokensPerMinute),
		show(eff.Concurrency), over(l.Concurrency), ovCap)
	return nil
}
