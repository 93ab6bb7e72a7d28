package pool

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// usageStreams are the usage streams of the models this worker serves.
func (p *Pool) usageStreams() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range p.runners {
		k := rkey.UsageKey(rkey.Tag(r.model.Name))
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// flushUsage moves usage events from Redis to PostgreSQL in batches, off the
// request path. An event is acked only after its row is committed, and rows
// are keyed by job id, so a crash between the two re-sends a row that the
// database then skips: exactly once.
func (p *Pool) flushUsage(ctx context.Context) {
	q, cfg := p.Queue, p.Config.Worker
	streams := p.usageStreams()
	for _, s := range streams {
		if err := q.EnsureGroup(ctx, s, rkey.GroupUsage); err != nil {
			p.Log.Error("usage group", slog.String("err", err.Error()))
		}
	}
	// Own pending entries first (a restart under the same name).
	for _, s := range streams {
		if es, err := q.PendingUsage(ctx, p.Name, s, int64(cfg.UsageBatch)); err == nil && len(es) > 0 {
			p.writeUsage(ctx, es)
		}
	}
	lastClaim := time.Now()
	for ctx.Err() == nil {
		var batch []redisq.UsageEntry
		if time.Since(lastClaim) > p.Config.Worker.ClaimIdle/2 {
			lastClaim = time.Now()
			for _, s := range streams {
				es, err := q.AutoClaimUsage(ctx, p.Name, s, p.Config.Worker.ClaimIdle, int64(cfg.UsageBatch))
				if err == nil {
					batch = append(batch, es...)
				}
			}
		}
		if len(batch) == 0 {
			es, err := q.ReadUsage(ctx, p.Name, streams, int64(cfg.UsageBatch), cfg.UsageFlush)
			if err != nil {
				if ctx.Err() == nil {
					p.Log.Warn("usage read failed", slog.String("err", err.Error()))
					sleep(ctx, time.Second)
				}
				continue
			}
			batch = es
		}
		if len(batch) > 0 {
			p.writeUsage(ctx, batch)
		}
	}
}

func (p *Pool) writeUsage(ctx context.Context, es []redisq.UsageEntry) {
	evs := make([]sluice.UsageEvent, 0, len(es))
	for _, e := range es {
		var ev sluice.UsageEvent
		if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
			p.Log.Error("dropping malformed usage event", slog.String("id", e.ID), slog.String("err", err.Error()))
			continue
		}
		evs = append(evs, ev)
	}
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		n, err := p.Usage.InsertUsage(wctx, evs)
		cancel()
		if err == nil {
			p.Telemetry.UsageRows("written", int(n))
			break
		}
		if sluice.KindOf(err) == sluice.KindInvalid {
			// A row the database refuses (say, an unknown user) must not hold
			// the batch back: write the rest one by one, park the refused ones.
			if !p.writeOneByOne(ctx, es, evs) {
				return // a transient failure: leave all pending; written rows are skipped next time
			}
			break
		}
		p.Telemetry.UsageWriteError()
		p.Log.Warn("usage write failed; retrying", slog.Int("events", len(evs)), slog.String("err", err.Error()))
		if ctx.Err() != nil || attempt >= 5 {
			return // left pending in Redis: a later pass (or another worker) writes it
		}
		sleep(ctx, time.Duration(attempt+1)*time.Second)
	}
	if err := p.Queue.AckUsage(context.WithoutCancel(ctx), es); err != nil {
		p.Log.Warn("usage ack failed; rows will be re-sent and skipped", slog.String("err", err.Error()))
	}
}

// writeOneByOne writes each event alone, parking the ones the database
// refuses; false means a transient failure stopped it.
func (p *Pool) writeOneByOne(ctx context.Context, es []redisq.UsageEntry, evs []sluice.UsageEvent) bool {
	byJob := map[string]redisq.UsageEntry{}
	for _, e := range es {
		var ev sluice.UsageEvent
		if json.Unmarshal([]byte(e.Data), &ev) == nil {
			byJob[ev.JobID] = e
		}
	}
	for _, ev := range evs {
		n, err := p.Usage.InsertUsage(ctx, []sluice.UsageEvent{ev})
		if err != nil && sluice.KindOf(err) != sluice.KindInvalid {
			return false
		}
		p.Telemetry.UsageRows("written", int(n))
		if err != nil {
			p.Log.Error("usage row refused; parked in the usage dead-letter stream", slog.String("job_id", ev.JobID), slog.String("err", err.Error()))
			p.Telemetry.UsageRows("parked", 1)
			e := byJob[ev.JobID]
			if perr := p.Queue.ParkUsage(context.WithoutCancel(ctx), e, err.Error()); perr != nil {
				p.Log.Error("usage park failed", slog.String("err", perr.Error()))
				return false
			}
		}
	}
	return true
}
