package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func init() {
	commands["key"] = command{
		usage: `key create|list|revoke|rotate ...     API keys (sluice key --help)`,
		run:   runKey,
		help: `  sluice key create --email E [--tier free|pro|enterprise] [--role user|developer|admin] [--name N]
      prints a new key for the user, created if new; on an existing user
      --tier and --role change the user (and say so)
  sluice key list --email E
      the user's keys: id, prefix, name, created, last used, state
  sluice key revoke --id KEY_ID
      the key stops working at once, on every instance
  sluice key rotate --email E --id KEY_ID [--overlap 24h]
      prints a successor with the same name, scopes, models and limits; the
      old key keeps working for --overlap (auth.identity.key_rotation_overlap)

The commands use DATABASE_URL and SLUICE_KEY_PEPPER, or those of the
` + "`sluice dev`" + ` running in this checkout. A key is printed once; only its hash is kept.`,
	}
}

func runKey(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return usageErrorf("key: want create, list, revoke or rotate")
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("key "+verb, flag.ContinueOnError)
	switch verb {
	case "create":
		email := fs.String("email", "", "the user's email (created if new)")
		tier := fs.String("tier", sluice.TierFree, "the user's tier")
		role := fs.String("role", sluice.RoleUser, "the user's role")
		name := fs.String("name", "cli", "a name for the key")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if *email == "" {
			return usageErrorf("key create: --email is required")
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		return keyCreate(ctx, e, *email, *tier, *role, *name, set["tier"], set["role"])
	case "list":
		email := fs.String("email", "", "the user's email")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if *email == "" {
			return usageErrorf("key list: --email is required")
		}
		return withUser(ctx, e, *email, false, func(d *app.Deps, u sluice.User) error { return keyList(ctx, e, d, u) })
	case "revoke":
		id := fs.String("id", "", "the key's id (sluice key list shows it)")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if !sluice.IsUUID(*id) {
			return usageErrorf("key revoke: --id must be a key id (sluice key list --email E shows them)")
		}
		return keyRevoke(ctx, e, *id)
	case "rotate":
		email := fs.String("email", "", "the key owner's email")
		id := fs.String("id", "", "the key's id (sluice key list shows it)")
		overlap := fs.Duration("overlap", -1, "how long the old key keeps working (default auth.identity.key_rotation_overlap)")
		if err := parseArgs(fs, args); err != nil {
			return err
		}
		if *email == "" || !sluice.IsUUID(*id) {
			return usageErrorf("key rotate: --email and --id (a key id) are required")
		}
		if *overlap > 30*24*time.Hour {
			return usageErrorf("key rotate: --overlap is at most 720h")
		}
		return withUser(ctx, e, *email, true, func(d *app.Deps, u sluice.User) error { return keyRotate(ctx, e, d, u, *id, *overlap) })
	default:
		return usageErrorf("key: unknown subcommand %q (want create, list, revoke or rotate)", verb)
	}
}

// withUser opens the environment and finds the user by email.
func withUser(ctx context.Context, e env, email string, needPepper bool, run func(*app.Deps, sluice.User) error) error {
	d, cleanup, err := openEnv(ctx, e.log, e.getenv, needPepper)
	if err != nil {
		return err
	}
	defer cleanup()
	u, err := d.DB.UserByEmail(ctx, email)
	if err != nil {
		return fmt.Errorf("user %s: %w", email, err)
	}
	return run(d, u)
}

func keyCreate(ctx context.Context, e env, email, tier, role, name string, tierSet, roleSet bool) error {
	d, cleanup, err := openEnv(ctx, e.log, e.getenv, true)
	if err != nil {
		return err
	}
	defer cleanup()
	if _, ok := d.Config.Tiers[tier]; !ok {
		return fmt.Errorf("--tier %q: not a tier in the configuration", tier)
	}
	if len(d.Config.Permissions(role)) == 0 {
		return fmt.Errorf("--role %q: not a role in auth.rbac", role)
	}
	u, err := d.DB.UserByEmail(ctx, email)
	switch {
	case errors.Is(err, sluice.ErrNotFound):
		if u, err = d.DB.UpsertUser(ctx, email, tier, role); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "created user %s (tier %s, role %s)\n", u.Email, u.Tier, u.Role)
	case err != nil:
		return err
	default:
		// An existing user: --tier and --role given are applied, not ignored.
		var up postgres.UserUpdate
		if tierSet && tier != u.Tier {
			up.Tier = &tier
		}
		if roleSet && role != u.Role {
			up.Role = &role
		}
		if up.Tier != nil || up.Role != nil {
			before := u
			if u, err = updateUser(ctx, e, d, u.ID, up, func(u sluice.User) map[string]any {
				return map[string]any{"tier": u.Tier, "role": u.Role}
			}); err != nil {
				return err
			}
			var changed []string
			if before.Tier != u.Tier {
				changed = append(changed, "tier "+before.Tier+" → "+u.Tier)
			}
			if before.Role != u.Role {
				changed = append(changed, "role "+before.Role+" → "+u.Role)
			}
			fmt.Fprintf(e.stderr, "existing user %s: %s\n", u.Email, strings.Join(changed, ", "))
		} else {
			fmt.Fprintf(e.stderr, "existing user %s (tier %s, role %s)\n", u.Email, u.Tier, u.Role)
		}
	}
	k, err := devstack.CreateKey(ctx, d, u.ID, name)
	if err != nil {
		return err
	}
	// The operator acts outside any session: the audit row names the target only.
	if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "cli.key_create", Target: u.ID, Outcome: "ok",
		Remote: "cli", Detail: map[string]any{"prefix": apikey.Display(k), "role": u.Role}}); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, k)
	return nil
}

func keyList(ctx context.Context, e env, d *app.Deps, u sluice.User) error {
	keys, err := d.DB.ListKeys(ctx, u.ID)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tNAME\tCREATED\tLAST USED\tSTATE")
	ts := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.DateTime)
	}
	now := time.Now()
	for _, k := range keys {
		state := "live"
		switch {
		case k.RevokedAt != nil:
			state = "revoked " + ts(k.RevokedAt)
		case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
			state = "expired " + ts(k.ExpiresAt)
		case k.ExpiresAt != nil:
			state = "live until " + ts(k.ExpiresAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, k.Name, ts(&k.CreatedAt), ts(k.LastUsedAt), state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "keys"
	if len(keys) == 1 {
		noun = "key"
	}
	fmt.Fprintf(e.stderr, "%d %s of %s\n", len(keys), noun, u.Email)
	return nil
}

func keyRevoke(ctx context.Context, e env, id string) error {
	d, cleanup, err := openEnv(ctx, e.log, e.getenv, false)
	if err != nil {
		return err
	}
	defer cleanup()
	owner, err := d.DB.RevokeAnyKey(ctx, id)
	if errors.Is(err, sluice.ErrNotFound) {
		return fmt.Errorf("no live key with id %s", id)
	}
	if err != nil {
		return err
	}
	if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "cli.key_revoke", Target: id, Outcome: "ok",
		Remote: "cli", Detail: map[string]any{"owner": owner}}); err != nil {
		return err
	}
	if err := authn.RevokeKey(ctx, d.Redis, id); err != nil {
		fmt.Fprintf(e.stderr, "note: the broadcast failed, so running instances refuse it within the key cache TTL: %v\n", err)
	}
	fmt.Fprintf(e.stdout, "revoked key %s\n", id)
	return nil
}

func keyRotate(ctx context.Context, e env, d *app.Deps, u sluice.User, id string, overlap time.Duration) error {
	if overlap < 0 {
		overlap = d.Config.Auth.Identity.KeyRotationOverlap
	}
	old, err := d.DB.GetKey(ctx, u.ID, id)
	if errors.Is(err, sluice.ErrNotFound) || (err == nil && (old.RevokedAt != nil || (old.ExpiresAt != nil && !old.ExpiresAt.After(time.Now())))) {
		return fmt.Errorf("%s has no live key with id %s", u.Email, id)
	}
	if err != nil {
		return err
	}
	key, err := apikey.New()
	if err != nil {
		return err
	}
	k, err := d.DB.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: old.Name, Hash: apikey.Hash([]byte(d.Config.Env.KeyPepper), key),
		Prefix: apikey.Display(key), ExpiresAt: old.ExpiresAt, Scopes: old.Scopes, Models: old.Models, RotatedFrom: &old.ID,
		Limits: old.Limits, CacheResponses: old.CacheResponses})
	if err != nil {
		return err
	}
	until := time.Now().Add(overlap)
	if err := d.DB.ExpireKeyBy(ctx, u.ID, old.ID, until); err != nil {
		return err
	}
	if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "cli.key_rotate", Target: old.ID, Outcome: "ok",
		Remote: "cli", Detail: map[string]any{"new_key_id": k.ID, "overlap_seconds": int64(overlap.Seconds())}}); err != nil {
		return err
	}
	if err := authn.RevokeKey(ctx, d.Redis, old.ID); err != nil { // cached entries do not know the new expiry
		fmt.Fprintf(e.stderr, "note: the broadcast failed: %v\n", err)
	}
	fmt.Fprintf(e.stderr, "rotated %s: new key id %s; the old key works until %s\n", old.Prefix, k.ID, until.UTC().Format(time.RFC3339))
	fmt.Fprintln(e.stdout, key)
	return nil
}

// updateUser changes a user as an operator, audits it and tells every
// running instance to drop what it cached of the user's keys; detail is the
// audit row's detail for the updated user.
func updateUser(ctx context.Context, e env, d *app.Deps, id string, up postgres.UserUpdate,
	detail func(sluice.User) map[string]any) (sluice.User, error) {
	u, err := d.DB.UpdateUser(ctx, id, up)
	if err != nil {
		return u, err
	}
	if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "admin.user_update", Target: u.ID, Outcome: "ok",
		Remote: "cli", Detail: detail(u)}); err != nil {
		return u, err
	}
	if err := authn.RevokeUser(ctx, d.Redis, u.ID); err != nil {
		fmt.Fprintf(e.stderr, "note: saved, but the broadcast failed, so running instances apply it within the key cache TTL: %v\n", err)
	}
	return u, nil
}
