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

// models are the names of the models this worker serves.
func (p *Pool) models() []string {
	out := make([]string, 0, len(p.runners))
	for _, r := range p.runners {
		out = append(out, r.model.Name)
	}
	return out
}

// flushUsage moves usage events from Redis to PostgreSQL in batches, off the
// request path. An event is acked only after its row is committed, and rows
// are keyed by job id, so a crash between the two re-sends a row that the
// database then skips: exactly once. A restart under the same name writes
// its own pending events first; a dead writer's are taken over after
// worker.claim_idle.
func (p *Pool) flushUsage(ctx context.Context) {
	cfg := p.Config.Worker
	c := p.Queue.Consumer(redisq.ConsumerOptions{Group: rkey.GroupUsage, Name: p.Name,
		Streams: rkey.PerTag(p.models(), p.Config.Jobs.Shards, rkey.UsageKey), Count: int64(cfg.UsageBatch), Block: cfg.UsageFlush,
		ClaimIdle: cfg.ClaimIdle, ClaimEvery: cfg.ClaimIdle / 2, OwnPendingFirst: true, Linger: cfg.UsageLinger}, p.Log)
	c.Run(ctx, func(ctx context.Context, ms []redisq.Message) { p.writeUsage(ctx, c, ms) })
}

func (p *Pool) writeUsage(ctx context.Context, c *redisq.Consumer, es []redisq.Message) {
	evs := make([]sluice.UsageEvent, 0, len(es))
	for _, e := range es {
		var ev sluice.UsageEvent
		if err := json.Unmarshal([]byte(e.Field("ev")), &ev); err != nil {
			p.Log.ErrorContext(ctx, "dropping malformed usage event", slog.String("id", e.ID), slog.String("err", err.Error()))
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
		p.Log.WarnContext(ctx, "usage write failed; retrying", slog.Int("events", len(evs)), slog.String("err", err.Error()))
		if ctx.Err() != nil || attempt >= 5 {
			return // left pending in Redis: a later pass (or another worker) writes it
		}
		sleep(ctx, time.Duration(attempt+1)*time.Second)
	}
	if err := c.Ack(context.WithoutCancel(ctx), es...); err != nil {
		p.Log.WarnContext(ctx, "usage ack failed; rows will be re-sent and skipped", slog.String("err", err.Error()))
	}
}

// writeOneByOne writes each event alone, parking the ones the database
// refuses; false means a transient failure stopped it.
func (p *Pool) writeOneByOne(ctx context.Context, es []redisq.Message, evs []sluice.UsageEvent) bool {
	byJob := map[string]redisq.Message{}
	for _, e := range es {
		var ev sluice.UsageEvent
		if json.Unmarshal([]byte(e.Field("ev")), &ev) == nil {
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
			p.Log.ErrorContext(ctx, "usage row refused; parked in the usage dead-letter stream", slog.String("job_id", ev.JobID), slog.String("err", err.Error()))
			p.Telemetry.UsageRows("parked", 1)
			e := byJob[ev.JobID]
			if perr := p.Queue.ParkUsage(context.WithoutCancel(ctx), e, err.Error()); perr != nil {
				p.Log.ErrorContext(ctx, "usage park failed", slog.String("err", perr.Error()))
				return false
			}
		}
	}
	return true
}
