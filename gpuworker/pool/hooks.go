package pool

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/webhook"
)

// deliverHooks posts finished async jobs to their webhook_url, signed, with
// exponential backoff; an entry is acked after success or the last attempt.
func (p *Pool) deliverHooks(ctx context.Context) {
	q, wcfg := p.Queue, p.Config.Jobs.Webhooks
	client := webhook.Client(wcfg.AllowPrivate, wcfg.Timeout)
	secret := []byte(p.Config.Env.WebhookSecret)
	seen := map[string]bool{}
	var streams []string
	for _, r := range p.runners {
		k := redisq.HooksKey(redisq.Tag(r.model.Name))
		if !seen[k] {
			seen[k] = true
			streams = append(streams, k)
			q.EnsureGroup(ctx, k, redisq.GroupHooks) //nolint:errcheck
		}
	}
	sem := make(chan struct{}, 16)
	deliver := func(e redisq.Entry) {
		defer func() { <-sem }()
		url, state, err := q.JobWebhook(ctx, e.JobID)
		if err == nil && url != "" {
			var body []byte
			backoff := time.Second
			for attempt := 1; ; attempt++ {
				if body == nil && state.ResultRef != "" { // a large result: the payload carries it all
					if state.Result, err = p.Objects.Fetch(ctx, state.ResultRef); err == nil {
						state.ResultRef = ""
					}
				}
				if err == nil && body == nil {
					body, _ = json.Marshal(map[string]any{"type": "job." + string(state.Status), "data": state})
				}
				if body != nil {
					err = webhook.Deliver(ctx, client, secret, url, e.ID, body)
				}
				if err == nil || attempt >= wcfg.MaxAttempts || ctx.Err() != nil {
					break
				}
				sleep(ctx, backoff)
				backoff *= 2
			}
			p.Telemetry.Webhook(err == nil)
			if err != nil {
				p.Log.Warn("webhook delivery gave up", slog.String("job_id", e.JobID), slog.String("err", err.Error()))
			}
		}
		if ctx.Err() == nil {
			q.AckHook(context.WithoutCancel(ctx), e) //nolint:errcheck
		}
	}
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		var es []redisq.Entry
		var err error
		if time.Since(lastClaim) > p.Config.Worker.ClaimIdle {
			lastClaim = time.Now()
			for _, s := range streams {
				// A delivery outlives ClaimIdle while it backs off; only long-dead ones are taken.
				more, _ := q.AutoClaim(ctx, redisq.GroupHooks, p.Name, s, 10*time.Minute, 16)
				es = append(es, more...)
			}
		}
		if len(es) == 0 {
			es, err = q.Read(ctx, redisq.GroupHooks, p.Name, streams, 16, time.Second)
		}
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for _, e := range es {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go deliver(e)
		}
	}
}
