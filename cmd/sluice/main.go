// Command sluice is the operator CLI: `sluice dev` runs the whole platform
// locally, `sluice migrate` applies the schema, `sluice key create` issues
// API keys.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// env is what every command gets.
type env struct {
	stdout io.Writer
	stderr io.Writer // notes beside a command's output (stdout stays scriptable)
	log    *slog.Logger
	getenv func(string) string
}

// command is one `sluice` subcommand. Commands register themselves in
// commands from their own files, so adding one touches no other.
type command struct {
	usage string // one line, shown by `sluice help`
	run   func(ctx context.Context, args []string, e env) error
	// help is the longer text `sluice <command> --help` adds to usage.
	help string
}

var commands = map[string]command{
	"dev": {usage: `dev [--no-worker] [--dir .sluice] [--sim-args "..."]   run the local stack`,
		run: func(ctx context.Context, args []string, e env) error {
			return dev(ctx, args, e.stdout, e.log, e.getenv)
		},
		help: `Runs the whole platform on SLUICE_ADDR (default 127.0.0.1:8080): the four
functions behind one gateway, the GPU worker and a simulator engine per model,
with an embedded PostgreSQL (under <dir>/pg) and Redis unless DATABASE_URL /
REDIS_URL are set. One stack per --dir: a second one refuses to start. The
other commands find a running stack from any folder inside the checkout
(<dir>/dev.json). Ctrl-C stops it.`},
	"migrate": {usage: `migrate                              apply database migrations`,
		run: func(ctx context.Context, args []string, e env) error {
			if err := parseArgs(flag.NewFlagSet("migrate", flag.ContinueOnError), args); err != nil {
				return err
			}
			return migrate(ctx, e.log, e.getenv)
		},
		help: `Applies the embedded migrations to DATABASE_URL (or the running sluice dev's
database) and creates raw usage's monthly partitions ahead.`},
	"config": {usage: `config                               print the built-in configuration`,
		run: func(_ context.Context, args []string, e env) error {
			if err := parseArgs(flag.NewFlagSet("config", flag.ContinueOnError), args); err != nil {
				return err
			}
			_, err := e.stdout.Write(config.DefaultYAML())
			return err
		},
		help: `Prints the configuration built in, with its defaults; SLUICE_CONFIG names a
YAML file that overrides parts of it.`},
	"version": {usage: `version                              print the version`,
		run: func(_ context.Context, args []string, e env) error {
			if err := parseArgs(flag.NewFlagSet("version", flag.ContinueOnError), args); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, version())
			return nil
		}},
}

// version describes this build: the module version (or the commit it was
// built from) and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "sluice (unknown build)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = rev[:min(12, len(rev))] + modified
	}
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("sluice %s %s %s/%s", v, bi.GoVersion, runtime.GOOS, runtime.GOARCH)
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
	b.WriteString("\n`sluice <command> --help` for one command; `sluice doctor` when something does not start.\n")
	return b.String()
}

// usageError is a command line the CLI does not understand: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// parseArgs parses a command's flags; an unknown flag, a bad value or a
// stray argument is a usageError (nothing is run).
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageErrorf("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// wantsHelp reports whether args ask for help (-h, -help, --help before a
// "--"), in which case the command prints its help and does nothing else.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func commandHelp(name string, c command) string {
	h := "usage: sluice " + c.usage + "\n"
	if c.help != "" {
		h += "\n" + c.help + "\n"
	}
	return h
}

// Main runs the CLI and returns the exit code: 0 done, 1 failed, 2 a
// command line it does not understand.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fmt.Fprint(stdout, commandHelp(args[1], c))
				return 0
			}
			fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[1], usage())
			return 2
		}
		fmt.Fprint(stdout, usage())
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	if wantsHelp(args[1:]) {
		fmt.Fprint(stdout, commandHelp(args[0], cmd))
		return 0
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if err := cmd.run(ctx, args[1:], env{stdout: stdout, stderr: stderr, log: log, getenv: getenv}); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "sluice: %v\nusage: sluice %s\n(sluice %s --help for more)\n", err, cmd.usage, args[0])
			return 2
		}
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
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *noWorker && *simArgs != "" {
		return usageErrorf("dev: --sim-args has no effect with --no-worker (no simulator runs)")
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
// database and Redis, or those of the `sluice dev` running in this checkout
// (its .sluice/dev.json, here or in a folder above, up to the repository
// root). It writes nothing to disk: a command that fails leaves no trace.
// needPepper: the command hashes API keys, so it must use the deployment's
// pepper (SLUICE_KEY_PEPPER, or the running stack's) and never a made-up one.
func openEnv(ctx context.Context, log *slog.Logger, getenv func(string) string, needPepper bool) (*app.Deps, func(), error) {
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
	_, st, running := devstack.FindState(".")
	// The stack's settings apply only where the command is not pointed
	// elsewhere: with another DATABASE_URL, its pepper means nothing.
	sameDB := running && (cfg.Env.DatabaseURL == "" || redacted(cfg.Env.DatabaseURL) == st.DatabaseURL)
	if cfg.Env.DatabaseURL == "" && running {
		if st.DatabaseRedacted {
			return nil, nil, fmt.Errorf("the `sluice dev` running here (%s) uses DATABASE_URL %s, whose password is not stored; set DATABASE_URL as it has it", st.URL, st.DatabaseURL)
		}
		cfg.Env.DatabaseURL = st.DatabaseURL
	}
	if cfg.Env.DatabaseURL == "" {
		return nil, nil, fmt.Errorf("DATABASE_URL is not set and no `sluice dev` is running in this checkout (no live %s in this folder or above); start `make run` first or set DATABASE_URL", filepath.Join(".sluice", devstack.StateFile))
	}
	if cfg.Env.KeyPepper == "" && sameDB && st.PepperFile != "" {
		b, err := os.ReadFile(st.PepperFile)
		if err != nil {
			return nil, nil, fmt.Errorf("the running `sluice dev`'s pepper: %w", err)
		}
		cfg.Env.KeyPepper = strings.TrimSpace(string(b))
	}
	if cfg.Env.KeyPepper == "" {
		if needPepper && sameDB {
			return nil, nil, fmt.Errorf("the `sluice dev` running here (%s) takes its pepper from SLUICE_KEY_PEPPER; set it as it has it", st.URL)
		}
		if needPepper {
			return nil, nil, errors.New("SLUICE_KEY_PEPPER is not set and no `sluice dev` of this database runs in this checkout; set it to the deployment's pepper (a key hashed with another would be refused)")
		}
		// Nothing is hashed: a throwaway pepper satisfies the wiring.
		b := make([]byte, 32)
		rand.Read(b) //nolint:errcheck
		cfg.Env.KeyPepper = hex.EncodeToString(b)
	}
	if cfg.Env.RedisURL == "" && sameDB {
		if st.RedisRedacted {
			return nil, nil, fmt.Errorf("the `sluice dev` running here (%s) uses REDIS_URL %s, whose password is not stored; set REDIS_URL as it has it", st.URL, st.RedisURL)
		}
		cfg.Env.RedisURL = st.RedisURL // so `sluice credits grant` reaches the live balances
	}
	if cfg.Env.RedisURL == "" {
		url, stop, err := devstack.EmbeddedRedis() // the CLI needs no queue; this satisfies the wiring
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, stop)
		cfg.Env.RedisURL = url
	}
	d, err := app.Open(ctx, cfg, log)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	stops = append(stops, d.Close)
	return d, cleanup, nil
}

// redacted is a URL without its password, as dev.json stores it.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

func migrate(ctx context.Context, log *slog.Logger, getenv func(string) string) error {
	d, cleanup, err := openEnv(ctx, log, getenv, false) // Open applies the migrations
	if err != nil {
		return err
	}
	defer cleanup()
	// Raw usage's monthly partitions ahead (the rollup's runs keep them so).
	_, err = d.DB.EnsureUsagePartitions(ctx, d.Config.UsageRollup.PartitionsAhead)
	return err
}
