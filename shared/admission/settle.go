package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Settler turns ended jobs' holds into charges. Every terminal path of a
// reserved job (completion, cancel, expiry, dead-letter, interruption) adds
// the job to its model tag's settle stream in the same script that ends it;
// any number of settlers (one runs in every process that calls app.Start)
// share the stream through a consumer group, and an entry claimed by a
// process that died is taken over after admission.settle_idle.
//
// Settling one job: read its hold (gone: settled already), read its usage
// from the job hash, split it (Hold.Split), append the ledger row (unique
// by job id), then settle.lua (a no-op if the hold is gone), then ack. A
// crash between steps repeats them, and each is idempotent.
type Settler struct {
	a    *Admitter
	name string
}

// Settler returns a settler consuming as name.
func (a *Admitter) Settler(name string) *Settler { return &Settler{a: a, name: name} }

func (s *Settler) streams() []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range s.a.cfg.Inference.Models {
		k := redisq.SettleKey(redisq.Tag(m.Name))
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// Run settles until ctx ends.
func (s *Settler) Run(ctx context.Context) {
	if s.a.cfg.Admission.Disabled {
		return
	}
	rdb, log := s.a.rdb, s.a.log
	streams := s.streams()
	ready := false
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		if !ready {
			ready = true
			for _, st := range streams {
				err := rdb.XGroupCreateMkStream(ctx, st, settleGroup, "0").Err()
				if err != nil && !isBusyGroup(err) {
					ready = false
				}
			}
			if !ready {
				sleep(ctx, time.Second)
				continue
			}
		}
		var msgs []entry
		if time.Since(lastClaim) > s.a.cfg.Admission.SettleIdle/2 {
			lastClaim = time.Now()
			for _, st := range streams {
				ms, _, err := rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: st, Group: settleGroup,
					Consumer: s.name, MinIdle: s.a.cfg.Admission.SettleIdle, Start: "0", Count: 100}).Result()
				if err == nil {
					for _, m := range ms {
						msgs = append(msgs, entry{st, m})
					}
				}
			}
		}
		if len(msgs) == 0 {
			args := &redis.XReadGroupArgs{Group: settleGroup, Consumer: s.name, Count: 100, Block: time.Second}
			args.Streams = append(append(args.Streams, streams...), repeat(">", len(streams))...)
			res, err := rdb.XReadGroup(ctx, args).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				if ctx.Err() == nil {
					if isNoGroup(err) {
						ready = false
					}
					log.Warn("settle read failed", slog.String("err", err.Error()))
					sleep(ctx, time.Second)
				}
				continue
			}
			for _, st := range res {
				for _, m := range st.Messages {
					msgs = append(msgs, entry{st.Stream, m})
				}
			}
		}
		for _, e := range msgs {
			job, _ := e.msg.Values["job"].(string)
			user, _ := e.msg.Values["user"].(string)
			if err := s.a.Settle(ctx, job, user); err != nil {
				log.Warn("settlement failed; it will be retried", slog.String("job_id", job), slog.String("err", err.Error()))
				continue // left pending: reclaimed after settle_idle
			}
			pipe := rdb.TxPipeline()
			pipe.XAck(ctx, e.stream, settleGroup, e.msg.ID)
			pipe.XDel(ctx, e.stream, e.msg.ID)
			pipe.Exec(ctx) //nolint:errcheck // a lost ack repeats an idempotent settlement
		}
	}
}

type entry struct {
	stream string
	msg    redis.XMessage
}

// Settle charges one ended job's real usage against its hold, once.
func (a *Admitter) Settle(ctx context.Context, jobID, userID string) error {
	if jobID == "" || userID == "" {
		return nil
	}
	k := keysOf(userID)
	hs, err := a.rdb.HGet(ctx, k.holds, jobID).Result()
	if errors.Is(err, redis.Nil) {
		a.rdb.ZRem(ctx, k.lease, jobID) //nolint:errcheck // settled before; the lease may linger
		return nil
	}
	if err != nil {
		return err
	}
	h, err := parseHold(hs)
	if err != nil {
		return err
	}
	var u sluice.Usage
	if raw, err := a.rdb.HGet(ctx, redisq.JobKey(jobID), "usage").Result(); err == nil && raw != "" {
		if err := json.Unmarshal([]byte(raw), &u); err != nil {
			return fmt.Errorf("admission: job %s usage: %w", jobID, err)
		}
	} else if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	c := h.Split(u.PromptTokens, u.CompletionTokens)
	if c.Unbilled > 0 {
		a.log.Warn("usage past the reservation was not charged", slog.String("job_id", jobID),
			slog.Int64("unbilled_micros", c.Unbilled), slog.Int64("prompt_tokens", u.PromptTokens),
			slog.Int64("prompt_bound", h.PromptBound))
	}
	if u.PromptTokens+u.CompletionTokens > 0 {
		if _, err := a.db.LedgerSettle(ctx, postgres.LedgerEntry{UserID: userID, Kind: "usage", JobID: jobID,
			Period: h.Period, Model: h.Model, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
			IncludedTokens: c.Included, CreditMicros: c.Credit, OverageMicros: c.Overage}); err != nil {
			return err
		}
	}
	return settleScript.Run(ctx, a.rdb, k.settle(), jobID, c.Included, c.Credit, c.Overage,
		u.PromptTokens+u.CompletionTokens).Err()
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func isBusyGroup(err error) bool {
	return err != nil && len(err.Error()) >= 9 && err.Error()[:9] == "BUSYGROUP"
}

func isNoGroup(err error) bool {
	return err != nil && len(err.Error()) >= 7 && err.Error()[:7] == "NOGROUP"
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ConsumerName is a settle-stream consumer name unique to this process.
func ConsumerName(base string) string {
	if base == "" {
		base, _ = os.Hostname()
	}
	b := make([]byte, 4)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux
	return fmt.Sprintf("%s-%d-%s", base, os.Getpid(), hex.EncodeToString(b))
}
