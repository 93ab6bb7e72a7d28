package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func init() {
	commands["credits"] = command{
		usage: `credits grant --email E --amount 5.00 [--note N] | credits balance --email E   prepaid credit`,
		run:   func(ctx context.Context, args []string, e env) error { return credits(ctx, args, e) },
	}
}

// credits grants prepaid credit (until Stripe top-ups exist) or shows a
// user's balances, from the ledger and from the live counters.
func credits(ctx context.Context, args []string, e env) error {
	var amount, note *string
	flags := func(verb string, fs *flag.FlagSet) {
		if verb != "grant" { // balance takes --email only: --amount there is an error, not ignored
			return
		}
		amount = fs.String("amount", "", "dollars to grant, e.g. 5.00 (exact to the micro-dollar)")
		note = fs.String("note", "granted with sluice credits grant", "why, kept in the ledger")
	}
	return userCommand(ctx, e, args, "usage: sluice credits grant --email E --amount 5.00 [--note N] | sluice credits balance --email E",
		[]string{"grant", "balance"}, flags, func(verb string, d *app.Deps, u sluice.User) error {
			// The period the user's allowances count against: a paying
			// user's subscription period, else the calendar month.
			period := sluice.CalendarPeriod(time.Now())
			if p, err := d.DB.UserPrincipal(ctx, u.ID); err == nil {
				p.ResolveBilling(time.Now(), d.Config.Billing.PaymentGrace)
				if p.Period != "" {
					period = p.Period
				}
			}
			if verb == "grant" {
				micros, err := config.ParseMicros(*amount)
				if err != nil || micros <= 0 {
					return fmt.Errorf("--amount %q: want a positive dollar amount with at most 6 decimals", *amount)
				}
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
		})
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
