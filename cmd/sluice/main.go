// Command sluice is the operator CLI: `sluice dev` runs the whole platform
// locally, `sluice migrate` applies the schema, `sluice key create` issues
// API keys.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// env is what every command gets.
type env struct {
	stdout io.Writer
	log    *slog.Logger
	getenv func(string) string
}

// command is one `sluice` subcommand. Commands register themselves in
// commands from their own files, so adding one touches no other.
type command struct {
	usage string // one line, shown by `sluice help`
	run   func(ctx context.Context, args []string, e env) error
}

var commands = map[string]command{
	"dev": {`dev [--no-worker] [--dir .sluice] [--sim-args "..."]   run the local stack`,
		func(ctx context.Context, args []string, e env) error {
			return dev(ctx, args, e.stdout, e.log, e.getenv)
		}},
	"migrate": {`migrate                              apply database migrations`,
		func(ctx context.Context, _ []string, e env) error { return migrate(ctx, e.log, e.getenv) }},
	"key": {`key create --email E [--tier free|pro|enterprise] [--role user|developer|admin] [--name N]`,
		func(ctx context.Context, args []string, e env) error {
			return key(ctx, args, e.stdout, e.log, e.getenv)
		}},
	"config": {`config                               print the built-in configuration`,
		func(_ context.Context, _ []string, e env) error {
			_, err := e.stdout.Write(config.DefaultYAML())
			return err
		}},
}

func usage() string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, n := range names {
		b.WriteString("  sluice " + commands[n].usage + "\n")
	}
	return b.String()
}

// Main runs the CLI and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage())
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprint(stderr, usage())
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if err := cmd.run(ctx, args[1:], env{stdout: stdout, log: log, getenv: getenv}); err != nil {
		fmt.Fprintln(stderr, "sluice:", err)
		return 1
	}
	return 0
}

func dev(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger, getenv func(string) string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	noWorker := fs.Bool("no-worker", false, "serve the functions without the in-process worker")
	dir := fs.String("dir", ".sluice", "state folder (embedded database, keys)")
	simArgs := fs.String("sim-args", "", "extra flags for the simulator engines, e.g. \"--inter-token-latency 20ms\"")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	st, err := devstack.Start(ctx, devstack.Options{Config: cfg, Log: log, Dir: *dir, NoWorker: *noWorker,
		SimBin: getenv("SLUICE_SIM"), SimArgs: strings.Fields(*simArgs), Out: stdout}, nil)
	if err != nil {
		return err
	}
	return st.Wait()
}

// openEnv opens the dependencies the CLI commands need: the configured
// database, or the dev stack's embedded one when none is configured.
func openEnv(ctx context.Context, log *slog.Logger, getenv func(string) string) (*app.Deps, func(), error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, nil, err
	}
	var stops []func()
	cleanup := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if cfg.Env.KeyPepper == "" {
		p, err := devstack.LoadOrCreateSecret(".sluice/pepper")
		if err != nil {
			return nil, nil, err
		}
		cfg.Env.KeyPepper = p
	}
	if cfg.Env.RedisURL == "" {
		if b, err := os.ReadFile(".sluice/redis_url"); err == nil { // a running `sluice dev`
			cfg.Env.RedisURL = strings.TrimSpace(string(b))
		}
	}
	if cfg.Env.RedisURL == "" {
		url, stop, err := devstack.EmbeddedRedis() // the CLI needs no queue; this satisfies the wiring
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, stop)
		cfg.Env.RedisURL = url
	}
	if cfg.Env.DatabaseURL == "" {
		if b, err := os.ReadFile(".sluice/database_url"); err == nil { // a running `sluice dev`
			cfg.Env.DatabaseURL = strings.TrimSpace(string(b))
		}
	}
	if cfg.Env.DatabaseURL == "" {
		return nil, nil, errors.New("DATABASE_URL is not set and no `sluice dev` is running here; start `make run` first or set DATABASE_URL")
	}
	d, err := app.Open(ctx, cfg, log)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	stops = append(stops, d.Close)
	return d, cleanup, nil
}

func migrate(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	d, cleanup, err := openEnv(ctx, log, getenv) // Open applies the migrations
	if err != nil {
		return err
	}
	defer cleanup()
	// Raw usage's monthly partitions ahead (the rollup's runs keep them so).
	_, err = d.DB.EnsureUsagePartitions(ctx, d.Config.UsageRollup.PartitionsAhead)
	return err
}

func key(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: sluice key create --email E [--tier free|pro|enterprise] [--role user|developer|admin]")
	}
	fs := flag.NewFlagSet("key create", flag.ContinueOnError)
	email := fs.String("email", "", "the user's email (created if new)")
	tier := fs.String("tier", sluice.TierFree, "tier of a new user")
	role := fs.String("role", sluice.RoleUser, "role of a new user")
	name := fs.String("name", "cli", "a name for the key")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("--email is required")
	}
	d, cleanup, err := openEnv(ctx, log, getenv)
	if err != nil {
		return err
	}
	defer cleanup()
	if _, ok := d.Config.Tiers[*tier]; !ok {
		return fmt.Errorf("--tier %q: not a tier in the configuration", *tier)
	}
	if len(d.Config.Permissions(*role)) == 0 {
		return fmt.Errorf("--role %q: not a role in auth.rbac", *role)
	}
	u, err := d.DB.UpsertUser(ctx, *email, *tier, *role)
	if err != nil {
		return err
	}
	k, err := devstack.CreateKey(ctx, d, u.ID, *name)
	if err != nil {
		return err
	}
	// The operator acts outside any session: the audit row names the target only.
	if err := d.DB.InsertAudit(ctx, postgres.AuditEntry{Action: "cli.key_create", Target: u.ID, Outcome: "ok",
		Remote: "cli", Detail: map[string]any{"prefix": apikey.Display(k), "role": u.Role}}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, k)
	return nil
}
