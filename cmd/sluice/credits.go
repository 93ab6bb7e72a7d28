package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
)

func init() {
	commands["credits"] = command{
		`credits grant --email E --amount 5.00 [--note N] | credits balance --email E   prepaid credit`,
		func(ctx context.Context, args []string, e env) error { return credits(ctx, args, e) },
	}
}

// credits grants prepaid credit (until Stripe top-ups exist) or shows a
// user's balances, from the ledger and from the live counters.
func credits(ctx context.Context, args []string, e env) error {
	if len(args) == 0 || (args[0] != "grant" && args[0] != "balance") {
		return errors.New("usage: sluice credits grant --email E --amount 5.00 [--note N] | sluice credits balance --email E")
	}
	fs := flag.NewFlagSet("credits "+args[0], flag.ContinueOnError)
	email := fs.String("email", "", "the user's email")
	amount := fs.String("amount", "", "dollars to grant, e.g. 5.00 (exact to the micro-dollar)")
	note := fs.String("note", "granted with sluice credits grant", "why, kept in the ledger")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("--email is required")
	}
	var micros config.Micros
	if args[0] == "grant" {
		m, err := config.ParseMicros(*amount)
		if err != nil || m <= 0 {
			return fmt.Errorf("--amount %q: want a positive dollar amount with at most 6 decimals", *amount)
		}
		micros = m
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
	period := time.Now().UTC().Format("2006-01")
	if args[0] == "grant" {
		id, err := d.DB.LedgerGrant(ctx, u.ID, period, int64(micros), *note)
		if err != nil {
			return err
		}
		if err := admission.Grant(ctx, d.Redis, u.ID, id, int64(micros)); err != nil {
			// The ledger has it; the live balance picks it up when next loaded.
			fmt.Fprintf(e.stdout, "granted $%s to %s (ledger entry %d); live balance not updated: %v\n", micros, u.Email, id, err)
			return nil
		}
		fmt.Fprintf(e.stdout, "granted $%s to %s (ledger entry %d)\n", micros, u.Email, id)
	}
	return printBalance(ctx, e.stdout, d.DB, d.Redis, u.ID, u.Email, period)
}

func printBalance(ctx context.Context, w io.Writer, db *postgres.DB, rdb redis.UniversalClient, userID, email, period string) error {
	b, err := db.LedgerBalance(ctx, userID, period)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s ledger: credit $%s, included tokens used in %s: %d, overage $%s\n", email,
		config.Micros(b.CreditMicros), period, b.IncludedTokens, config.Micros(b.OverageMicros))
	l, err := admission.LiveCounters(ctx, rdb, userID)
	if err != nil || !l.Loaded {
		fmt.Fprintln(w, "live counters: not loaded (they load from the ledger on the next request)")
		return nil
	}
	fmt.Fprintf(w, "live counters: credit $%s (held $%s), included used %d (held %d), overage $%s (held $%s), %d holds, %d leases\n",
		config.Micros(l.Credit), config.Micros(l.HeldCredit), l.IncludedUsed, l.HeldIncluded,
		config.Micros(l.OverageUsed), config.Micros(l.HeldOverage), l.Holds, l.Leases)
	return nil
}
