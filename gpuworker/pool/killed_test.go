package pool_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/pool"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// killedHeldPrompt is the prompt bound of the hold the killed jobs are
// admitted with: what a killed attempt pays for its prefill.
const killedHeldPrompt = 777

// worker is one worker process of a kill test, with a Redis connection of
// its own: kill closes it, so from then on nothing the worker does reaches
// Redis (no chunk, no heartbeat, no completion, no hand-back), as after a
// kill -9, and stops it.
type worker struct {
	q      *redisq.Queue
	cancel context.CancelFunc
}

func startWorker(t *testing.T, name, yml string, db *postgres.DB) *worker {
	t.Helper()
	cfg, err := config.Parse([]byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{q: redisq.New(testenv.Redis(t), redisq.Options{EncodeError: openai.EncodeError, MaxAttempts: 5})}
	p, err := pool.New(pool.Deps{Config: cfg, Log: slog.New(slog.DiscardHandler), Queue: w.q, Usage: db, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	t.Cleanup(cancel)
	go p.Run(ctx) //nolint:errcheck // a killed worker's Run fails; the test checks what reached Redis
	return w
}

func (w *worker) kill() {
	w.q.Client().Close() //nolint:errcheck
	w.cancel()
}

// TestKilledWorkerPaysItsEngineWork: a worker killed mid-attempt leaves its
// job's entry to be reclaimed by another worker. The killed attempt's
// engine work (its prompt's prefill, the output chunks it published) is
// billed with the job's end, once: on the interrupted end of a streamed job
// that had shown output, and on top of the rerun's usage for a job that had
// not; a reclaim replayed, or a reclaiming worker that dies before it
// reaches the engine, carries nothing twice.
func TestKilledWorkerPaysItsEngineWork(t *testing.T) {
	t.Parallel()
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			model := testenv.Name("kill")
			sim := startSimSeqs(t, model, 4, "--inter-token-latency", "20ms")
			yml := fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 2048, endpoints: [%q]}]}
pricing: null
worker: {usage_flush: 20ms, heartbeat: 100ms, claim_idle: 1s}
`, model, sim.URL)
			h := &harness{q: redisq.New(testenv.Redis(t), redisq.Options{EncodeError: openai.EncodeError, MaxAttempts: 5}), db: pgtest.New(t)}
			u, err := h.db.UpsertUser(ctx, model+"@example.com", "free", "user")
			if err != nil {
				t.Fatal(err)
			}
			a := startWorker(t, "t-a-"+model, yml, h.db)
			content := "write a long story about a lighthouse keeper"
			maxTokens := 400
			if !stream {
				maxTokens = 150
			}
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":%d,"ignore_eos":true`, model, content, maxTokens)
			if stream {
				body += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			j := &sluice.Job{ID: rkey.NewJobID(model), UserID: u.ID, Model: model, Endpoint: sluice.EndpointChat, Stream: stream,
				Body: []byte(body + "}"), Reserved: true, Hold: fmt.Sprintf("%d|%d|1|1|0|0|0|2026-12|%s", killedHeldPrompt, maxTokens, model)}
			if err := h.q.Enqueue(ctx, j, 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			rdb, jk := h.q.Client(), rkey.JobKey(j.ID)

			// Kill the worker once its attempt is on the engine (and, streamed,
			// has published some output).
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				st, _ := rdb.HGet(ctx, jk, "status").Result()
				n, _ := rdb.XLen(ctx, rkey.ResultKey(j.ID)).Result()
				if st == "running" && (!stream || n >= 6) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the job never reached the engine: %v", rdb.HGetAll(ctx, jk).Val())
				}
			}
			if !stream {
				time.Sleep(500 * time.Millisecond) // well into its decode (150 tokens at 20ms)
			}
			a.kill()
			var published int64
			for _, m := range rdb.XRange(ctx, rkey.ResultKey(j.ID), "-", "+").Val() {
				if m.Values["type"] == "chunk" {
					published++
				}
			}
			if stream && published < 5 {
				t.Fatalf("published %d chunks before the kill", published)
			}

			if !stream {
				// A reclaim replayed, by a worker that dies before it reaches
				// the engine: the killed attempt is carried once.
				time.Sleep(1100 * time.Millisecond)
				es, err := h.q.AutoClaim(ctx, rkey.GroupWorkers, "t-x-"+model, rkey.StreamKey(model, 0), time.Second, 10)
				if err != nil || len(es) != 1 {
					t.Fatalf("reclaim: %v %v", es, err)
				}
				for range 2 {
					if out, _, err := h.q.Start(ctx, es[0], rkey.GroupWorkers, "t-x-"+model, model); err != nil || out != redisq.StartRun {
						t.Fatalf("start: %q %v", out, err)
					}
				}
				if c := rdb.HGet(ctx, jk, "carried_p").Val(); c != strconv.Itoa(killedHeldPrompt) {
					t.Fatalf("carried prompt after a replayed reclaim %q, want %d", c, killedHeldPrompt)
				}
			}

			startWorker(t, "t-b-"+model, yml, h.db)
			js := waitJob(t, h, j.ID, 30*time.Second)
			prompt, completion := usageRow(t, h, j.ID)
			var wantP, wantC int64
			if stream {
				// Interrupted: it showed output, so it is not rerun.
				if js.Status != sluice.JobFailed || errCode(js) != "stream_interrupted" {
					t.Fatalf("streamed job ended %s (%s), want failed stream_interrupted", js.Status, errCode(js))
				}
				wantP, wantC = killedHeldPrompt, published
			} else {
				if js.Status != sluice.JobSucceeded {
					t.Fatalf("rerun job ended %s (%s)", js.Status, errCode(js))
				}
				wantP = killedHeldPrompt + tokenizeCount(t, sim.URL, model, content)
				wantC = int64(maxTokens)
			}
			t.Logf("killed after %d published chunks: billed prompt %d completion %d (want %d, %d)", published, prompt, completion, wantP, wantC)
			if prompt != wantP || completion != wantC {
				t.Fatalf("usage row %d+%d, want %d+%d", prompt, completion, wantP, wantC)
			}
			if js.Usage == nil || js.Usage.PromptTokens != wantP || js.Usage.CompletionTokens != wantC {
				t.Fatalf("job usage %+v, want %d+%d", js.Usage, wantP, wantC)
			}
			// Settlement charges what the usage row records: one settle entry, with that usage.
			var settled []sluice.Usage
			for _, m := range rdb.XRange(ctx, rkey.SettleKey(rkey.JobTag(j.ID)), "-", "+").Val() {
				if m.Values["job"] == j.ID {
					var su sluice.Usage
					if err := json.Unmarshal([]byte(fmt.Sprint(m.Values["usage"])), &su); err != nil {
						t.Fatalf("settle entry usage %q: %v", m.Values["usage"], err)
					}
					settled = append(settled, su)
				}
			}
			if len(settled) != 1 || settled[0].PromptTokens != wantP || settled[0].CompletionTokens != wantC {
				t.Fatalf("settle entries %+v, want one of %d+%d", settled, wantP, wantC)
			}
		})
	}
}
