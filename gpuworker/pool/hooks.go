package pool

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/webhook"
)

// hookBudgetWindow is the window jobs.webhooks.user_time is counted over.
const hookBudgetWindow = time.Minute

// userBusyDelay is how long a delivery waits when its user already has
// jobs.webhooks.user_concurrency deliveries in flight here.
const userBusyDelay = time.Second

// deliverHooks posts finished async jobs to their webhook_url, signed, with
// exponential backoff. Delivery is fair between users: a failed attempt
// waits its backoff in Redis's due set (redisq.DeferHook), not in a slot; one
// user's deliveries take at most jobs.webhooks.user_concurrency of this
// worker's jobs.webhooks.concurrency slots and jobs.webhooks.user_time of
// delivery time a minute. So a user whose host never answers delays only
// their own webhooks.
func (p *Pool) deliverHooks(ctx context.Context) {
	q, wcfg := p.Queue, p.Config.Jobs.Webhooks
	client := webhook.Client(wcfg.AllowPrivate, wcfg.Timeout)
	secret := []byte(p.Config.Env.WebhookSecret)
	tags := rkey.PerTag(p.models(), p.Config.Jobs.Shards, nil)
	c := q.Consumer(redisq.ConsumerOptions{Group: rkey.GroupHooks, Name: p.Name,
		Streams: rkey.PerTag(p.models(), p.Config.Jobs.Shards, rkey.HooksKey), Count: int64(wcfg.Concurrency), Block: 250 * time.Millisecond,
		// A delivery lasts at most webhooks.timeout; only long-dead ones are taken.
		ClaimIdle: max(10*wcfg.Timeout, p.Config.Worker.ClaimIdle), ClaimEvery: p.Config.Worker.ClaimIdle,
		EachPass: func(ctx context.Context) {
			for _, tag := range tags {
				if _, err := q.DueHooks(ctx, tag, 100); err != nil && ctx.Err() == nil {
					p.Log.WarnContext(ctx, "due webhooks not moved", slog.String("err", err.Error()))
				}
			}
		}}, p.Log)
	sem := make(chan struct{}, wcfg.Concurrency)
	var mu sync.Mutex
	busy := map[string]int{} // user → deliveries in flight here
	deliver := func(m redisq.Message) {
		defer func() { <-sem }()
		e := m.Entry()
		h, err := q.HookJob(ctx, e)
		if err != nil {
			return // left pending: reclaimed and tried again
		}
		if h.URL == "" {
			c.Ack(context.WithoutCancel(ctx), m) //nolint:errcheck // a lost ack repeats this no-op
			return
		}
		later := func(d time.Duration, spent time.Duration, tried bool, reason string) {
			if _, err := q.DeferHook(context.WithoutCancel(ctx), e, h.UserID, d, spent, hookBudgetWindow, tried); err != nil {
				p.Log.WarnContext(ctx, "webhook not put off; it is reclaimed later", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
				return
			}
			p.Telemetry.WebhookDeferred(reason)
		}
		mu.Lock()
		if busy[h.UserID] >= wcfg.UserConcurrency {
			mu.Unlock()
			later(userBusyDelay, 0, false, "user_budget")
			return
		}
		busy[h.UserID]++
		mu.Unlock()
		defer func() {
			mu.Lock()
			if busy[h.UserID]--; busy[h.UserID] <= 0 {
				delete(busy, h.UserID)
			}
			mu.Unlock()
		}()
		if spent, left, err := q.HookTimeSpent(ctx, rkey.JobTag(e.JobID), h.UserID); err == nil && spent >= wcfg.UserTime {
			later(max(left, userBusyDelay), 0, false, "user_budget")
			return
		}

		state := h.State
		if state.ResultRef != "" { // a large result: the payload carries it all
			b, ferr := p.Objects.Fetch(ctx, state.ResultRef)
			if ferr != nil {
				later(backoff(h.Tries), 0, false, "retry")
				return
			}
			state.Result, state.ResultRef = b, ""
		}
		body, _ := json.Marshal(map[string]any{"type": "job." + string(state.Status), "data": state})
		start := time.Now()
		err = webhook.Deliver(ctx, client, secret, h.URL, h.EventID, body)
		spent := time.Since(start)
		if ctx.Err() != nil {
			return // shutting down: left pending, reclaimed
		}
		if err != nil && h.Tries+1 < wcfg.MaxAttempts {
			later(backoff(h.Tries+1), spent, true, "retry")
			return
		}
		p.Telemetry.Webhook(err == nil)
		if err != nil {
			p.Log.WarnContext(ctx, "webhook delivery gave up", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
		}
		if _, derr := q.DeferHook(context.WithoutCancel(ctx), e, h.UserID, -1, spent, hookBudgetWindow, true); derr != nil {
			p.Log.WarnContext(ctx, "webhook ack failed", slog.String("job_id", e.JobID), slog.String("err", derr.Error()))
		}
	}
	c.Run(ctx, func(ctx context.Context, ms []redisq.Message) {
		for _, m := range ms {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return // the rest stay pending: reclaimed
			}
			go deliver(m)
		}
	})
}

// backoff is the wait before delivery attempt tries+1: 1s, 2s, 4s, …
func backoff(tries int) time.Duration {
	return time.Second << min(max(tries-1, 0), 10)
}
