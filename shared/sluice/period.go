package sluice

import "time"

// A period is what monthly allowances count against: a user's included
// tokens and postpaid overage cap. Free users (and anyone without a paid
// subscription period) have the UTC calendar month; paying users have the
// Stripe subscription period that their latest paid invoice started, which
// lasts until the next one starts. The label keys the ledger rows and the
// live counters, so both sides must compute it the same way: here.

// CalendarPeriod is the label of the UTC calendar month holding t: YYYY-MM.
func CalendarPeriod(t time.Time) string { return t.UTC().Format("2006-01") }

// PeriodLabel is the label of a subscription period starting at start:
// "p" and the start in UTC to the second (p20261125T140311Z). The prefix
// keeps it apart from calendar months.
func PeriodLabel(start time.Time) string { return "p" + start.UTC().Format("20060102T150405Z") }
