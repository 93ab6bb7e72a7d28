package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// tiers saturates one simulator endpoint (8 sequences) with streamed chat
// requests of a pro user at three service tiers — a quarter priority
// (queue class 0), half default (the pro tier's class 1), a quarter flex
// (the batch class) — from -c clients in a closed loop, -n requests in
// all, and reports each tier's time to first token. Under saturation the
// queue orders them: priority before default before flex.
func tiers(ctx context.Context, o options, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	const seqs = 8
	o.fleetSims = 1
	f, err := startFleet(ctx, o, seqs, 20*time.Millisecond, 5*time.Millisecond, progress)
	if err != nil {
		return "", err
	}
	defer f.close()
	d := f.st.Deps
	usr, err := d.DB.UpsertUser(ctx, "tiers@bench.local", sluice.TierPro, sluice.RoleUser)
	if err != nil {
		return "", err
	}
	key, err := devstack.CreateKey(ctx, d, usr.ID, "bench")
	if err != nil {
		return "", err
	}
	names := []string{sluice.TierPriority, sluice.TierDefault, sluice.TierFlex}
	clients := []int{max(o.concurrency/4, 1), max(o.concurrency/2, 1), max(o.concurrency/4, 1)}
	t := target{name: "sluice", url: "http://" + f.st.Addr + "/v1/chat/completions", auth: "Bearer " + key}
	type tally struct {
		mu    sync.Mutex
		ttft  []time.Duration
		errs  int
		first string
	}
	res := make([]*tally, len(names))
	var sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for k, name := range names {
		res[k] = &tally{}
		body := []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"ignore_eos":true,"stream":true,"service_tier":%q}`,
			model, o.maxTokens, name))
		for range clients[k] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && sent.Add(1) <= int64(o.requests) {
					_, first, err := one(ctx, f.client, t, body, true)
					r := res[k]
					r.mu.Lock()
					if err != nil {
						r.errs++
						if r.first == "" {
							r.first = err.Error()
						}
					} else {
						r.ttft = append(r.ttft, first)
					}
					r.mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "## Service tiers under saturation: one engine of %d sequences, %d streaming clients, %d requests in %s\n\n",
		seqs, clients[0]+clients[1]+clients[2], o.requests, elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "max_tokens %d, simulator time to first token 20 ms, 5 ms per token; a pro user (queue class 1): priority runs in class 0, flex in the batch class (batch.max_slot_share 0.5).\n\n",
		o.maxTokens)
	b.WriteString("| service_tier | clients | requests | errors | TTFT p50 ms | p90 ms | p99 ms |\n|---|---|---|---|---|---|---|\n")
	for k, name := range names {
		p := pct(res[k].ttft)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.1f | %.1f | %.1f |\n", name, clients[k], len(res[k].ttft), res[k].errs, ms(p.p50), ms(p.p90), ms(p.p99))
		if res[k].first != "" {
			progress("%s: first error: %s", name, res[k].first)
		}
	}
	return b.String(), nil
}
