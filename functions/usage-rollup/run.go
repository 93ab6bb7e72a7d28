package rollup

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Report is what one scheduled run did (the POST / answer and the log line).
type Report struct {
	Object            string `json:"object"` // "usage.rollup_run"
	Skipped           bool   `json:"skipped"`
	PartitionsCreated int    `json:"partitions_created"`
	// WatermarkFrom and WatermarkTo are the xid range folded.
	WatermarkFrom int64     `json:"watermark_from"`
	WatermarkTo   int64     `json:"watermark_to"`
	Folded        Sums      `json:"folded"`
	HourlyRows    int64     `json:"hourly_rows"`
	DailyRows     int64     `json:"daily_rows"`
	Meter         Meter     `json:"meter"`
	Reconcile     Reconcile `json:"reconcile"`
	ElapsedMS     int64     `json:"elapsed_ms"`
	// ResponsesExpired is how many stored responses past
	// responses.store_ttl the run deleted.
	ResponsesExpired int64 `json:"responses_expired"`
}

// responseSweeper deletes expired stored responses; postgres.DB is one.
type responseSweeper interface {
	SweepResponses(ctx context.Context) (int64, error)
}

// Sums are requests, tokens and their list price.
type Sums struct {
	Requests         int64 `json:"requests"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	CostMicros       int64 `json:"cost_micros,omitempty"`
	// CachedTokens: prompt tokens served from the engines' prefix caches;
	// CachedSavedMicros: what their price took off CostMicros.
	CachedTokens      int64 `json:"cached_tokens,omitempty"`
	CachedSavedMicros int64 `json:"cached_saved_micros,omitempty"`
}

// Meter is the outbox's part of a run.
type Meter struct {
	Appended   int64  `json:"appended"`
	Sent       int    `json:"sent"`
	Duplicates int    `json:"duplicates"` // Stripe already had the identifier: counted as sent
	Waiting    int    `json:"waiting"`    // the user has no Stripe customer yet: kept pending
	Failed     int    `json:"failed"`     // kept pending, retried after backoff
	Stripe     string `json:"stripe"`     // "configured" or "not configured" (all kept pending)
}

// Reconcile is the run's comparison of rollups, raw usage and the ledger.
type Reconcile struct {
	OK             bool     `json:"ok"`
	Days           int      `json:"days"` // days the fold touched, compared
	FirstDay       string   `json:"first_day,omitempty"`
	LastDay        string   `json:"last_day,omitempty"`
	Raw            Sums     `json:"raw"`
	Daily          Sums     `json:"daily"`
	Unsettled      int64    `json:"unsettled_jobs"`
	LedgerMismatch int64    `json:"ledger_mismatch"`
	Differences    []string `json:"differences,omitempty"`
}

// RunScheduled is the scheduled entry point (OpenFaaS cron-connector, a
// Lambda EventBridge schedule, the local stack's timer): partitions ahead,
// one fold (one runner at a time; a concurrent run reports skipped), then
// the meter outbox is sent after the fold's commit.
func RunScheduled(ctx context.Context, d Deps) (Report, error) {
	start := time.Now()
	rep := Report{Object: "usage.rollup_run"}
	n, err := d.DB.EnsureUsagePartitions(ctx, d.Config.UsageRollup.PartitionsAhead)
	if err != nil {
		return rep, err
	}
	rep.PartitionsCreated = n
	f, err := d.DB.FoldUsage(ctx, prices(d))
	if err != nil {
		d.Telemetry.RollupRun(false, time.Now())
		return rep, err
	}
	rep.Skipped = f.Skipped
	rep.WatermarkFrom, rep.WatermarkTo = f.From, f.To
	rep.Folded = Sums{f.Folded.Requests, f.Folded.PromptTokens, f.Folded.CompletionTokens, f.CostMicros,
		f.Folded.CachedTokens, f.CachedSavedMicros}
	rep.HourlyRows, rep.DailyRows = f.HourlyRows, f.DailyRows
	rep.Meter.Appended = f.OutboxRows
	rc := f.Reconcile
	rep.Reconcile = Reconcile{OK: len(rc.Differences) == 0, Days: rc.Days, Raw: sums(rc.Raw), Daily: sums(rc.Daily),
		Unsettled: rc.Unsettled, LedgerMismatch: rc.LedgerMismatch, Differences: rc.Differences}
	if !rc.FirstDay.IsZero() {
		rep.Reconcile.FirstDay, rep.Reconcile.LastDay = rc.FirstDay.Format(time.DateOnly), rc.LastDay.Format(time.DateOnly)
	}
	// Sending happens after the fold committed, outside any transaction: an
	// HTTP call inside one would hold the xid horizon back for everyone.
	if err := sendMeter(ctx, d, &rep.Meter); err != nil {
		d.Log.WarnContext(ctx, "usage-rollup: meter outbox", slog.String("err", err.Error()))
	}
	if sw, ok := d.DB.(responseSweeper); ok {
		// Expired responses are never read (GET and previous_response_id
		// check expires_at); this only frees their rows.
		n, err := sw.SweepResponses(ctx)
		rep.ResponsesExpired = n
		if err != nil {
			d.Log.WarnContext(ctx, "usage-rollup: stored responses sweep", slog.String("err", err.Error()))
		}
	}
	rep.ElapsedMS = time.Since(start).Milliseconds()
	if !rep.Skipped { // a skipped run's figures belong to the run that held the lock
		d.Telemetry.RollupRun(true, time.Now())
		d.Telemetry.Reconciled(len(rep.Reconcile.Differences), time.Now())
	}
	lvl := slog.LevelInfo
	if !rep.Reconcile.OK {
		lvl = slog.LevelError
	}
	d.Log.Log(ctx, lvl, "usage-rollup: run", slog.Bool("skipped", rep.Skipped),
		slog.Int64("requests", rep.Folded.Requests), slog.Int64("watermark", rep.WatermarkTo),
		slog.Int64("outbox_appended", rep.Meter.Appended), slog.Int("meter_sent", rep.Meter.Sent),
		slog.Bool("reconciled", rep.Reconcile.OK), slog.Any("differences", rep.Reconcile.Differences),
		slog.Int64("elapsed_ms", rep.ElapsedMS))
	return rep, nil
}

func sums(s sluice.UsageSums) Sums {
	return Sums{Requests: s.Requests, PromptTokens: s.PromptTokens, CompletionTokens: s.CompletionTokens}
}

// prices lists the pricing block's per-token and per-request prices (a
// cached prompt token at the price settlement charges it), sorted for a
// stable statement.
func prices(d Deps) []sluice.ModelPrices {
	out := make([]sluice.ModelPrices, 0, len(d.Config.Pricing))
	for m, p := range d.Config.Pricing {
		out = append(out, sluice.ModelPrices{Model: m, InputMicros: int64(p.InputTokens), OutMicros: int64(p.OutputTokens),
			RequestMicros: int64(p.PerRequest), GPUSecondMicros: int64(p.PerGPUSecond), CachedInputMicros: admission.CachedPrice(p)})
	}
	slices.SortFunc(out, func(a, b sluice.ModelPrices) int { return strings.Compare(a.Model, b.Model) })
	return out
}

// meterMaxAge: Stripe refuses meter events timestamped more than 35 days
// ago; an older pending row (Stripe was unreachable for a month) is sent as
// of now so the overage is still billed, in the current period.
const meterMaxAge = 34 * 24 * time.Hour

// sendMeter posts pending outbox rows to Stripe Billing Meter events.
// Concurrent senders may post the same row: its identifier makes Stripe
// answer the second with "already exists", which counts as sent.
func sendMeter(ctx context.Context, d Deps, m *Meter) error {
	if d.Stripe == nil {
		m.Stripe = "not configured"
		return nil
	}
	m.Stripe = "configured"
	evs, err := d.DB.MeterPending(ctx, d.Config.UsageRollup.MeterBatch)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if e.StripeCustomerID == "" {
			// Kept pending until the user has a Stripe customer (Checkout
			// creates it); no attempt is counted.
			m.Waiting++
			if err := d.DB.MeterFailed(ctx, e.ID, "the user has no Stripe customer yet", d.Config.UsageRollup.Schedule, false); err != nil {
				return err
			}
			continue
		}
		ts := e.EventTime
		if time.Since(ts) > meterMaxAge {
			ts = time.Now()
		}
		err := d.Stripe.SendMeterUsage(ctx, sluice.MeterUsage{EventName: d.Config.UsageRollup.MeterEventName,
			Identifier: e.Identifier, Customer: e.StripeCustomerID, Value: e.Value, At: ts})
		switch {
		case err == nil:
			m.Sent++
			err = d.DB.MeterSent(ctx, e.ID, e.StripeCustomerID, "")
		case errors.Is(err, sluice.ErrMeterDuplicate):
			m.Duplicates++
			err = d.DB.MeterSent(ctx, e.ID, e.StripeCustomerID, "duplicate identifier: Stripe already recorded it")
		default:
			m.Failed++
			d.Log.WarnContext(ctx, "usage-rollup: meter event not sent", slog.Int64("outbox_id", e.ID), slog.String("err", err.Error()))
			err = d.DB.MeterFailed(ctx, e.ID, err.Error(), backoff(e.Attempts), true)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// backoff doubles from 30s per failed attempt, at most an hour.
func backoff(attempts int) time.Duration {
	b := 30 * time.Second << min(attempts, 7)
	return min(b, time.Hour)
}

// Schedule runs RunScheduled every usage_rollup.schedule until ctx ends:
// the local stack's timer. Several processes may run it; the fold's lock
// lets one through at a time.
func Schedule(ctx context.Context, d Deps) {
	t := time.NewTicker(d.Config.UsageRollup.Schedule)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := RunScheduled(ctx, d); err != nil && ctx.Err() == nil {
				d.Log.ErrorContext(ctx, "usage-rollup: scheduled run", slog.String("err", err.Error()))
			}
		}
	}
}
