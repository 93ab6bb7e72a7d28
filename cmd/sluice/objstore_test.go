package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/webhook"
)

// usageCount is the number of usage rows of a job now (no waiting).
func (s *stack) usageCount(t *testing.T, jobID string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM inference_requests WHERE job_id = $1`, jobID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitJob polls GET /v1/jobs/{id} until done(status) or the timeout.
func (s *stack) waitJob(t *testing.T, id string, timeout time.Duration, done func(string) bool) map[string]any {
	t.Helper()
	var j map[string]any
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var st int
		st, j = s.do(t, "GET", "/v1/jobs/"+id, "")
		if st != 200 {
			t.Fatalf("get %s: %d %v", id, st, j)
		}
		if s, _ := j["status"].(string); done(s) {
			return j
		}
	}
	t.Fatalf("job %s: still %v after %s", id, j["status"], timeout)
	return nil
}

// TestJobPayloadsInObjectStore runs the stack with storage.jobs on, against
// an in-process S3 (gofakes3): a result over the threshold goes to S3 and the
// Redis record keeps only its key, yet the synchronous caller and GET
// /v1/jobs/{id} get the whole result; a large async input travels by
// reference; usage is recorded exactly once; with S3 down at result-write
// time the job is not recorded done (no key, no usage) and is retried, and
// fails cleanly once its attempts are spent.
func TestJobPayloadsInObjectStore(t *testing.T) {
	t.Parallel()
	s3 := s3test.StartOutage(t)
	s := startStack(t, fmt.Sprintf(`storage:
  endpoint: %s
  bucket: e2e-jobs
  jobs:
    enabled: true
    result_threshold_bytes: 200
    input_threshold_bytes: 300
worker:
  heartbeat: 300ms
  claim_idle: 1500ms
`, s3.URL))
	ctx := context.Background()
	rdb := testenv.Redis(t)
	store := s3test.NewAt(t, s3.URL, "e2e-jobs")
	record := func(id string) map[string]string {
		h, err := rdb.HGetAll(ctx, rkey.JobKey(id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	// Synchronous: the SDK gets the whole answer; Redis holds only the key.
	var resp *http.Response
	c := s.client(s.key)
	cc, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     s.models[0],
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("A long answer, please")},
		MaxTokens: openai.Int(30),
	}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.Get("Sluice-Job-Id")
	if n := len(cc.RawJSON()); n <= 200 || cc.Choices[0].Message.Content == "" {
		t.Fatalf("the answer (%d bytes) must be whole and over result_threshold_bytes, so it came through S3", n)
	}
	if row, n := s.usage(t, id); n != 1 || row.completion != cc.Usage.CompletionTokens {
		t.Fatalf("usage rows %d %+v, SDK %+v", n, row, cc.Usage)
	}
	// Once delivered, neither Redis nor S3 keeps a synchronous result
	// (issue 16): the record keeps its status and usage, and the object is
	// deleted.
	var rec map[string]string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		rec = record(id)
		objs, err := store.List(ctx, "jobs/"+rec["user"]+"/"+id+"/")
		if rec["status"] == "succeeded" && rec["body"] == "" && rec["result"] == "" && rec["result_ref"] == "" && err == nil && len(objs) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("delivered job: record %v, objects %+v %v", rec, objs, err)
		}
	}
	t.Logf("sync: %d-byte answer through S3; record slimmed and object deleted after delivery", len(cc.RawJSON()))

	// Async with a large input: the stream entry and record carry the key;
	// the webhook carries the whole result.
	hooks := make(chan []byte, 1)
	hsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := webhook.Verify([]byte("whsec-test"), r.Header.Get(webhook.Header), b, time.Now(), 5*time.Minute); err != nil {
			w.WriteHeader(400)
			return
		}
		select {
		case hooks <- b:
		default:
		}
	}))
	t.Cleanup(hsrv.Close)
	prompt := strings.Repeat("large input ", 200)
	st, j := s.do(t, "POST", "/v1/jobs", fmt.Sprintf(`{"url":"/v1/chat/completions","webhook_url":%q,"body":{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":30}}`,
		hsrv.URL+"/hook", s.models[0], prompt))
	if st != 202 {
		t.Fatalf("create: %d %v", st, j)
	}
	aid := j["id"].(string)
	rec = record(aid)
	inKey := "jobs/" + rec["user"] + "/" + aid + "/input.json"
	if rec["body"] != "" || rec["body_ref"] != inKey {
		t.Fatalf("async record: body %d bytes, ref %q; want only %q", len(rec["body"]), rec["body_ref"], inKey)
	}
	j = s.waitJob(t, aid, 15*time.Second, func(st string) bool { return st != "queued" && st != "running" })
	res, _ := j["result"].(map[string]any)
	if j["status"] != "succeeded" || res == nil || res["choices"] == nil {
		t.Fatalf("async job: %v", j)
	}
	u, _ := j["usage"].(map[string]any)
	if row, n := s.usage(t, aid); n != 1 || float64(row.prompt) != u["prompt_tokens"] || row.prompt < 200 {
		t.Fatalf("async usage rows %d %+v, job usage %v (the prompt must have reached the engine whole)", n, row, u)
	}
	if rec = record(aid); rec["result_ref"] == "" || rec["result"] != "" {
		t.Fatalf("async result not by reference: %v", rec["result_ref"])
	}
	select {
	case b := <-hooks:
		var ev struct {
			Data struct {
				ID     string          `json:"id"`
				Result json.RawMessage `json:"result"`
			} `json:"data"`
		}
		var whole openai.ChatCompletion
		if json.Unmarshal(b, &ev) != nil || ev.Data.ID != aid || json.Unmarshal(ev.Data.Result, &whole) != nil ||
			whole.ID != res["id"] || len(whole.Choices) == 0 {
			t.Fatalf("webhook payload without the whole result: %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook for the async job")
	}
	// The input is deleted once the job is final.
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		objs, err := store.List(ctx, "jobs/"+rec["user"]+"/"+aid+"/")
		if err == nil && len(objs) == 1 && strings.HasSuffix(objs[0].Key, "/result.json") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("objects of the async job: %+v %v", objs, err)
		}
	}
	other := s.newKey(t, "objstore-other@example.com")
	req, _ := http.NewRequest("GET", s.base+"/v1/jobs/"+aid, nil)
	req.Header.Set("Authorization", "Bearer "+other)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 404 {
		t.Fatalf("another user's job: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// S3 down when the result is written: not done, no key, no usage; retried once it is back.
	small := fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"hi"}],"max_tokens":30}}`, s.models[1])
	s3.Down.Store(true)
	_, j = s.do(t, "POST", "/v1/jobs", small)
	rid := j["id"].(string)
	// The S3 client's own retries (3 tries) are spent, so this run gives up.
	waitFor(t, 15*time.Second, func() bool { return s3.Refused(rid+"/result.json") >= 3 })
	time.Sleep(300 * time.Millisecond)
	rec = record(rid)
	if rec["status"] == "succeeded" || rec["result_ref"] != "" || rec["result"] != "" || s.usageCount(t, rid) != 0 {
		t.Fatalf("S3 down: status %s ref %q result %d bytes usage rows %d; want nothing recorded",
			rec["status"], rec["result_ref"], len(rec["result"]), s.usageCount(t, rid))
	}
	s3.Down.Store(false)
	j = s.waitJob(t, rid, 20*time.Second, func(st string) bool { return st == "succeeded" || st == "failed" })
	if j["status"] != "succeeded" || j["result"] == nil {
		t.Fatalf("after S3 came back: %v", j)
	}
	if rec = record(rid); rec["attempts"] == "1" || rec["attempts"] == "" || rec["result_ref"] == "" {
		t.Fatalf("retried job: attempts %s ref %q", rec["attempts"], rec["result_ref"])
	}
	if _, n := s.usage(t, rid); n != 1 {
		t.Fatalf("retried job's usage rows: %d, want exactly 1", n)
	}
	t.Logf("S3 down: %d result writes refused; retried on attempt %s, one usage row", s3.Refused(rid+"/result.json"), rec["attempts"])

	// S3 stays down: the job fails cleanly once its attempts are spent.
	s3.Down.Store(true)
	_, j = s.do(t, "POST", "/v1/jobs", small)
	did := j["id"].(string)
	// Meanwhile a large input cannot be stored: 503, nothing enqueued.
	st, j = s.do(t, "POST", "/v1/jobs", fmt.Sprintf(`{"url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":30}}`, s.models[1], prompt))
	if e, _ := j["error"].(map[string]any); st != 503 || e["code"] != "service_unavailable" {
		t.Fatalf("large input with S3 down: %d %v, want 503 service_unavailable", st, j)
	}
	j = s.waitJob(t, did, 40*time.Second, func(st string) bool { return st == "succeeded" || st == "failed" })
	s3.Down.Store(false)
	e, _ := j["error"].(map[string]any)
	if j["status"] != "failed" || e["code"] != "max_attempts_exceeded" || j["result"] != nil {
		t.Fatalf("S3 down for good: %v", j)
	}
	if rec = record(did); rec["result_ref"] != "" || s.usageCount(t, did) != 0 {
		t.Fatalf("failed job: ref %q, usage rows %d; want none", rec["result_ref"], s.usageCount(t, did))
	}
	t.Logf("S3 down for good: failed with %v after %s attempts, %d refused writes, no usage", e["code"], rec["attempts"], s3.Refused(did+"/result.json"))
}

func waitFor(t *testing.T, timeout time.Duration, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met in time")
		}
	}
}
