//go:build !shrinkwrap

package submit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/redisq/rkey"
)

// slimMax is the most a delivered synchronous request may leave in Redis
// (issue 16: "at most a few hundred bytes").
const slimMax = 512

// waitFor polls cond every 20 ms until it holds, failing after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
	}
}

// TestDeliveredRequestLeavesLittle: a delivered synchronous request (plain
// and streamed) leaves its job hash at a few hundred bytes and no result
// stream; GET /v1/jobs/{id} still answers its status and usage; it is
// settled exactly once, for exactly the usage the client was shown, and
// its record then expires within jobs.sync_retention.
func TestDeliveredRequestLeavesLittle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"%s"}],"max_tokens":12`, e.model, strings.Repeat("tell me more ", 40))
			if stream {
				body += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			resp := e.do(t, "POST", "/v1/chat/completions", e.key, body+"}", nil)
			raw, _ := io.ReadAll(resp.Body)
			id := resp.Header.Get("Sluice-Job-Id")
			if resp.StatusCode != 200 || id == "" {
				t.Fatalf("%d %s (job %q)", resp.StatusCode, raw, id)
			}
			var shown struct {
				Usage struct {
					PromptTokens     int64 `json:"prompt_tokens"`
					CompletionTokens int64 `json:"completion_tokens"`
				} `json:"usage"`
			}
			if stream {
				sc := bufio.NewScanner(strings.NewReader(string(raw)))
				for sc.Scan() {
					if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(line, `"usage":{`) {
						json.Unmarshal([]byte(line), &shown) //nolint:errcheck
					}
				}
			} else if err := json.Unmarshal(raw, &shown); err != nil {
				t.Fatal(err)
			}
			if shown.Usage.PromptTokens == 0 || shown.Usage.CompletionTokens == 0 {
				t.Fatalf("no usage shown: %s", raw)
			}
			// The answer is written before the job is slimmed.
			jk, rk := rkey.JobKey(id), rkey.ResultKey(id)
			waitFor(t, "the result stream to go", func() bool { return e.rdb.Exists(ctx, rk).Val() == 0 })
			n, err := e.rdb.MemoryUsage(ctx, jk).Result()
			if err != nil || n > slimMax {
				t.Fatalf("job hash after delivery: %d bytes, %v; want at most %d", n, err, slimMax)
			}
			t.Logf("job hash after delivery: %d bytes; result stream gone", n)
			var js struct {
				Status string          `json:"status"`
				Result json.RawMessage `json:"result"`
				Usage  *struct {
					PromptTokens     int64 `json:"prompt_tokens"`
					CompletionTokens int64 `json:"completion_tokens"`
					TotalTokens      int64 `json:"total_tokens"`
				} `json:"usage"`
			}
			if r := e.do(t, "GET", "/v1/jobs/"+id, e.key, "", &js); r.StatusCode != 200 || js.Status != "succeeded" || js.Usage == nil ||
				js.Usage.PromptTokens != shown.Usage.PromptTokens || js.Usage.CompletionTokens != shown.Usage.CompletionTokens ||
				js.Usage.TotalTokens != js.Usage.PromptTokens+js.Usage.CompletionTokens || (len(js.Result) > 0 && string(js.Result) != "null") {
				t.Fatalf("GET after delivery: %d %+v (usage %+v), shown %+v", r.StatusCode, js, js.Usage, shown.Usage)
			}
			// Settled once, for what was used; then the record expires
			// within sync_retention, not result_ttl.
			var rows int
			var prompt, completion int64
			waitFor(t, "the settlement", func() bool {
				err := e.db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0)
					FROM credit_ledger WHERE job_id = $1`, id).Scan(&rows, &prompt, &completion)
				return err == nil && rows > 0
			})
			if rows != 1 || prompt != shown.Usage.PromptTokens || completion != shown.Usage.CompletionTokens {
				t.Fatalf("ledger: %d rows, %d+%d tokens; shown %+v", rows, prompt, completion, shown.Usage)
			}
			waitFor(t, "the settled record's expiry", func() bool {
				ttl := e.rdb.PTTL(ctx, jk).Val()
				return ttl > 0 && ttl <= e.cfg.Jobs.SyncRetention
			})
		})
	}
}

// TestAbandonedStreamLeavesLittle: a streamed request whose client goes
// away mid-stream is cancelled and, once it ends, keeps a few hundred bytes
// and no result stream, while what it used is still settled.
func TestAbandonedStreamLeavesLittle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	rctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(rctx, "POST", e.url+"/v1/completions", strings.NewReader(
		fmt.Sprintf(`{"model":%q,"prompt":"once upon a time","max_tokens":400,"ignore_eos":true,"stream":true}`, e.model)))
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("Sluice-Job-Id")
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("%d, job %q", resp.StatusCode, id)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // the first chunk: it runs
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	jk, rk := rkey.JobKey(id), rkey.ResultKey(id)
	waitFor(t, "the abandoned job to be slimmed", func() bool {
		return e.rdb.Exists(ctx, rk).Val() == 0 && e.rdb.HExists(ctx, jk, "status").Val() && !e.rdb.HExists(ctx, jk, "body").Val()
	})
	if n, err := e.rdb.MemoryUsage(ctx, jk).Result(); err != nil || n > slimMax {
		t.Fatalf("abandoned job hash: %d bytes, %v", n, err)
	}
	var rows int
	waitFor(t, "the settlement", func() bool {
		return e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM credit_ledger WHERE job_id = $1`, id).Scan(&rows) == nil && rows > 0
	})
	if rows != 1 {
		t.Fatalf("%d ledger rows", rows)
	}
}

// TestSequentialAtConcurrencyOne: a synchronous answer leaves only after the
// request's concurrency slot is free (the worker releases it with the
// completion, redisq.Outcome.Lease; relay, for an end event that does not
// say so, before the flush), so a client allowed one request at a time that
// sends the next as soon as it has an answer is never refused: on new
// connections, and on one kept alive, whose next request the server reads
// as soon as the handler returns (what follows the answer runs after it).
func TestSequentialAtConcurrencyOne(t *testing.T) {
	t.Parallel()
	e := setupYAML(t, true, func(url string) string { return url }, "",
		"tiers:\n  free: {rate_limit: unlimited, included_credits: unlimited, tokens_per_minute: unlimited, concurrency: 1}\n")
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	kept := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := range 40 {
		client := fresh
		if i >= 20 {
			client = kept
		}
		req, _ := http.NewRequest("POST", e.url+"/v1/chat/completions", strings.NewReader(
			fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"number %d"}],"max_tokens":4}`, e.model, i)))
		req.Header.Set("Authorization", "Bearer "+e.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d at concurrency 1, one at a time: %d %s", i, resp.StatusCode, b)
		}
	}
}
