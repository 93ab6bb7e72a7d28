package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// userCommand runs `sluice <name> <verb> --email E [flags]`: it checks the
// verb, parses the common --email and the verb's own flags (added by flags),
// opens the environment and finds the user, then calls run.
func userCommand(ctx context.Context, e env, args []string, usage string, verbs []string,
	flags func(verb string, fs *flag.FlagSet), run func(verb string, d *app.Deps, u sluice.User) error) error {
	if len(args) == 0 || !slices.Contains(verbs, args[0]) {
		return usageErrorf("%s: want %s", strings.Fields(usage)[2], strings.Join(verbs, " or "))
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	email := fs.String("email", "", "the user's email")
	flags(args[0], fs)
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if *email == "" {
		return usageErrorf("--email is required")
	}
	d, cleanup, err := openEnv(ctx, e.log, e.getenv, false)
	if err != nil {
		return err
	}
	defer cleanup()
	u, err := d.DB.UserByEmail(ctx, *email)
	if err != nil {
		return fmt.Errorf("user %s: %w", *email, err)
	}
	return run(args[0], d, u)
}
