//go:build !shrinkwrap

package submit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/batch/driver"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore/s3test"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/redisq"
)

// bEnv is submit with the Files and Batch APIs in front of a real worker,
// simulator, settler, PostgreSQL and Redis, and batch drivers the test
// starts and stops.
type bEnv struct {
	*env
	adm   *admission.Admitter
	q     *redisq.Queue
	blobs batch.Blobs
	log   *slog.Logger
}

// setupBatches starts the stack; tiers is the config's tiers block, the
// model is priced at 1 and 2 micro-dollars per input and output token.
func setupBatches(t *testing.T, tiers, batchCfg string, blobs batch.Blobs) *bEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := testenv.Name("batch")
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 1024, 8, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference: {models: [{name: %[1]s, max_batch_size: 8, max_model_len: 1024, endpoints: [%[2]q]}]}
pricing:
  %[1]s: {input_tokens: 0.000001, output_tokens: 0.000002}
worker: {usage_flush: 20ms}
admission: {lease_ttl: 2s}
batch: {max_file_bytes: 100000, max_lines: 200, driver_lease: 2s%[4]s}
tiers:
%[3]s`, model, sim.URL, tiers, batchCfg)))
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, ctx, cancel, cfg, model, redisq.Options{})
	log, db, rdb, q, adm := b.log, b.db, b.rdb, b.q, b.adm
	if blobs == nil {
		blobs = batch.Disk{Dir: t.TempDir()}
	}
	v := app.NewVerifier(cfg, db, log)
	srv := httptest.NewServer(submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: v, Admission: adm,
		Batches: db, Files: blobs}))
	t.Cleanup(srv.Close)
	e := &bEnv{env: &env{url: srv.URL, model: model, db: db, cfg: cfg, rdb: rdb}, adm: adm, q: q, blobs: blobs, log: log}
	e.key = e.newKey(t, model+"@example.com")
	return e
}

// crashed is a store whose driver never gives its lease back, as a
// process killed with SIGKILL does not: the next driver waits for it to lapse.
type crashed struct{ batch.Store }

func (crashed) ReleaseBatch(context.Context, string, string) error { return nil }

// startDriver runs a batch driver until the returned stop is called.
func (e *bEnv) startDriver(t *testing.T, name string) (stop func()) {
	return e.startDriverOn(t, name, e.db)
}

func (e *bEnv) startDriverOn(t *testing.T, name string, store batch.Store) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &driver.Driver{Config: e.cfg, Log: e.log, Store: store, Blobs: e.blobs, Queue: e.q, Admission: e.adm,
		Name: name, Poll: 30 * time.Millisecond}
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }() //nolint:errcheck
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// upload posts a file; it returns the status and the decoded answer.
func (e *bEnv) upload(t *testing.T, key, purpose, name string, content []byte) (int, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if purpose != "" {
		mw.WriteField("purpose", purpose) //nolint:errcheck
	}
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(content) //nolint:errcheck
	mw.Close()
	req, _ := http.NewRequest("POST", e.url+"/v1/files", &buf)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

func (e *bEnv) raw(t *testing.T, method, path, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// chatLines is n chat lines for model, custom ids "req-<i>".
func chatLines(model string, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"custom_id":"req-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"line %d"}],"max_tokens":8}}`+"\n", i, model, i)
	}
	return b.Bytes()
}

type batchObj struct {
	ID            string                                 `json:"id"`
	Status        string                                 `json:"status"`
	OutputFileID  string                                 `json:"output_file_id"`
	ErrorFileID   string                                 `json:"error_file_id"`
	RequestCounts struct{ Total, Completed, Failed int } `json:"request_counts"`
	Errors        *struct {
		Data []struct{ Code, Message string }
	} `json:"errors"`
}

func (e *bEnv) createBatch(t *testing.T, key, fileID string) batchObj {
	t.Helper()
	var b batchObj
	r := e.do(t, "POST", "/v1/batches", key, fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"k":"v"}}`, fileID), &b)
	if r.StatusCode != 200 || b.ID == "" {
		t.Fatalf("create batch: %d %+v", r.StatusCode, b)
	}
	return b
}

// wait polls the batch until it is in one of the statuses.
func (e *bEnv) wait(t *testing.T, id string, within time.Duration, statuses ...string) batchObj {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var b batchObj
		e.do(t, "GET", "/v1/batches/"+id, e.key, "", &b)
		for _, s := range statuses {
			if b.Status == s {
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s is %s after %s, want %v (%+v)", id, b.Status, within, statuses, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type outLine struct {
	ID       string  `json:"id"`
	CustomID *string `json:"custom_id"`
	Response *struct {
		StatusCode int             `json:"status_code"`
		RequestID  string          `json:"request_id"`
		Body       json.RawMessage `json:"body"`
	} `json:"response"`
	Error *struct{ Code, Message string } `json:"error"`
}

func (e *bEnv) fileLines(t *testing.T, id string) []outLine {
	t.Helper()
	if id == "" {
		return nil
	}
	st, b := e.raw(t, "GET", "/v1/files/"+id+"/content", e.key)
	if st != 200 {
		t.Fatalf("content of %s: %d %s", id, st, b)
	}
	var out []outLine
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var o outLine
		if err := json.Unmarshal(l, &o); err != nil {
			t.Fatalf("output line %s: %v", l, err)
		}
		out = append(out, o)
	}
	return out
}

func (e *bEnv) userID(t *testing.T) string {
	t.Helper()
	u, err := e.db.UserByEmail(context.Background(), e.model+"@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func (e *bEnv) ledgerRows(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM credit_ledger WHERE user_id = $1 AND kind = 'usage'`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// grant gives the user prepaid credit.
func (e *bEnv) grant(t *testing.T, userID string, micros int64) {
	t.Helper()
	if _, err := e.db.LedgerGrant(context.Background(), userID, "", micros, "test"); err != nil {
		t.Fatal(err)
	}
}

const strictTier = "  free:\n    rate_limit: 2\n    concurrency: 1\n    included_credits: 0\n"

// TestFiles: upload, list, get, content, delete, each the owner's only;
// bad purpose, too large, too many lines refused with nothing stored. The
// content lives in S3 (gofakes3, as MinIO would).
func TestFiles(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, "", batch.S3{Store: s3test.New(t), Prefix: "files/"})
	other := e.newKey(t, testenv.Name("other")+"@example.com")
	s3 := e.blobs.(batch.S3)
	s3.Store.EnsureBucket(context.Background()) //nolint:errcheck
	content := chatLines(e.model, 3)
	st, f := e.upload(t, e.key, "batch", "in.jsonl", content)
	id, _ := f["id"].(string)
	if st != 200 || !strings.HasPrefix(id, "file-") || f["object"] != "file" || f["bytes"] != float64(len(content)) ||
		f["purpose"] != "batch" || f["filename"] != "in.jsonl" || f["status"] != "processed" || f["created_at"] == nil {
		t.Fatalf("upload: %d %v", st, f)
	}
	time.Sleep(1100 * time.Millisecond) // created_at orders the list, newest first
	st, f2 := e.upload(t, e.key, "user_data", "notes.txt", []byte("hello"))
	if st != 200 {
		t.Fatalf("user_data upload: %d %v", st, f2)
	}
	var list struct {
		Object string
		Data   []map[string]any
	}
	e.do(t, "GET", "/v1/files", e.key, "", &list)
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0]["id"] != f2["id"] || list.Data[1]["id"] != id {
		t.Fatalf("list: %+v", list)
	}
	if st, b := e.raw(t, "GET", "/v1/files/"+id+"/content", e.key); st != 200 || !bytes.Equal(b, content) {
		t.Fatalf("content: %d %q", st, b)
	}
	// Another user sees nothing of it.
	for _, p := range []string{"GET /v1/files/" + id, "GET /v1/files/" + id + "/content", "DELETE /v1/files/" + id} {
		m, path, _ := strings.Cut(p, " ")
		if st, b := e.raw(t, m, path, other); st != 404 {
			t.Fatalf("%s as another user: %d %s", p, st, b)
		}
	}
	e.do(t, "GET", "/v1/files", other, "", &list)
	if len(list.Data) != 0 {
		t.Fatalf("another user's list: %+v", list)
	}
	// Bad input.
	if st, m := e.upload(t, e.key, "fine-tune", "x.jsonl", content); st != 400 || errCode(m) != "invalid_value" {
		t.Fatalf("bad purpose: %d %v", st, m)
	}
	if st, m := e.upload(t, e.key, "", "x.jsonl", content); st != 400 || errCode(m) != "missing_required_parameter" {
		t.Fatalf("no purpose: %d %v", st, m)
	}
	if st, m := e.upload(t, e.key, "batch", "big.jsonl", bytes.Repeat([]byte("x"), 100001)); st != 413 {
		t.Fatalf("too large: %d %v", st, m)
	}
	if st, m := e.upload(t, e.key, "batch", "many.jsonl", chatLines(e.model, 201)); st != 400 {
		t.Fatalf("too many lines: %d %v", st, m)
	}
	e.do(t, "GET", "/v1/files", e.key, "", &list)
	if len(list.Data) != 2 {
		t.Fatalf("refused uploads left records: %+v", list)
	}
	// Delete.
	var del map[string]any
	if r := e.do(t, "DELETE", "/v1/files/"+id, e.key, "", &del); r.StatusCode != 200 || del["deleted"] != true {
		t.Fatalf("delete: %d %v", r.StatusCode, del)
	}
	if st, _ := e.raw(t, "GET", "/v1/files/"+id, e.key); st != 404 {
		t.Fatalf("deleted file: %d", st)
	}
	if _, err := s3.Get(context.Background(), batch.BlobKey(e.userID(t), id)); err == nil {
		t.Fatal("deleted file's content is still stored")
	}
}

// TestBatchCompletes: 50 lines on a tier of 2 requests per minute and one
// at a time (batch lines have their own limits), each custom_id once in the
// output, one ledger row per line; bad lines go to the error file.
func TestBatchCompletes(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, ", lines_in_flight: 6", nil)
	uid := e.userID(t)
	e.grant(t, uid, 1_000_000)
	e.startDriver(t, "d1")
	const n = 50
	in := chatLines(e.model, n)
	// Bad lines: malformed JSON, a duplicate custom_id, another url, a body the parser refuses.
	in = append(in, []byte(`{"custom_id":"bad-json",`+"\n")...)
	in = append(in, []byte(`{"custom_id":"req-3","method":"POST","url":"/v1/chat/completions","body":{"model":"`+e.model+`","messages":[{"role":"user","content":"x"}]}}`+"\n")...)
	in = append(in, []byte(`{"custom_id":"wrong-url","method":"POST","url":"/v1/completions","body":{"model":"`+e.model+`","prompt":"x"}}`+"\n")...)
	in = append(in, []byte(`{"custom_id":"bad-body","method":"POST","url":"/v1/chat/completions","body":{"model":"`+e.model+`","messages":[],"max_tokens":4,"bogus":1}}`+"\n")...)
	st, f := e.upload(t, e.key, "batch", "in.jsonl", in)
	if st != 200 {
		t.Fatalf("upload %d %v", st, f)
	}
	start := time.Now()
	b := e.createBatch(t, e.key, f["id"].(string))
	b = e.wait(t, b.ID, 60*time.Second, "completed", "failed")
	t.Logf("50-line batch completed in %s", time.Since(start).Round(time.Millisecond))
	if b.Status != "completed" || b.RequestCounts.Total != n+4 || b.RequestCounts.Completed != n || b.RequestCounts.Failed != 4 {
		t.Fatalf("batch: %+v", b)
	}
	out := e.fileLines(t, b.OutputFileID)
	seen := map[string]int{}
	for _, l := range out {
		if l.CustomID == nil || l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil || !strings.HasPrefix(l.ID, "batch_req_") {
			t.Fatalf("output line %+v", l)
		}
		var body struct{ Object string }
		json.Unmarshal(l.Response.Body, &body) //nolint:errcheck
		if body.Object != "chat.completion" {
			t.Fatalf("output body %s", l.Response.Body)
		}
		seen[*l.CustomID]++
	}
	if len(out) != n || len(seen) != n {
		t.Fatalf("output has %d lines, %d custom ids; want %d", len(out), len(seen), n)
	}
	codes := map[string]bool{}
	for _, l := range e.fileLines(t, b.ErrorFileID) {
		if l.Error == nil {
			t.Fatalf("error line %+v", l)
		}
		codes[l.Error.Code] = true
	}
	for _, c := range []string{batch.CodeInvalidJSONLine, batch.CodeDuplicateCustomID, batch.CodeMismatchedURL, "unknown_parameter"} {
		if !codes[c] {
			t.Errorf("no %s line in the error file: %v", c, codes)
		}
	}
	// Billed once per line that ran, nothing for refused lines.
	var rows int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rows = e.ledgerRows(t, uid); rows >= n || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	if rows = e.ledgerRows(t, uid); rows != n {
		t.Fatalf("ledger has %d usage rows, want %d", rows, n)
	}
	t.Logf("output lines %d, error lines %d, ledger rows %d", len(out), 4, rows)
	// The output file is the owner's, purpose batch_output.
	var fo map[string]any
	e.do(t, "GET", "/v1/files/"+b.OutputFileID, e.key, "", &fo)
	if fo["purpose"] != "batch_output" {
		t.Fatalf("output file %v", fo)
	}
}

// TestBatchBadInput: unknown or another user's file, bad endpoint or
// window, unknown key; a file of another purpose or an empty/not-JSONL one
// makes a failed batch.
func TestBatchBadInput(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, "", nil)
	e.startDriver(t, "d1")
	other := e.newKey(t, testenv.Name("other")+"@example.com")
	_, f := e.upload(t, e.key, "batch", "in.jsonl", chatLines(e.model, 2))
	id := f["id"].(string)
	var m map[string]any
	for _, c := range []struct {
		key, body string
		status    int
		code      string
	}{
		{e.key, `{"input_file_id":"file-nope","endpoint":"/v1/chat/completions","completion_window":"24h"}`, 404, "not_found"},
		{other, fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, id), 404, "not_found"},
		{e.key, fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/images","completion_window":"24h"}`, id), 400, "invalid_value"},
		{e.key, fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"1h"}`, id), 400, "invalid_value"},
		{e.key, fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h","x":1}`, id), 400, "unknown_parameter"},
		{e.key, fmt.Sprintf(`{"input_file_id":%q,"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, id, id), 400, "duplicate_key"},
	} {
		m = nil
		if r := e.do(t, "POST", "/v1/batches", c.key, c.body, &m); r.StatusCode != c.status || errCode(m) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.body, r.StatusCode, m, c.status, c.code)
		}
	}
	if st, _ := e.raw(t, "GET", "/v1/batches/batch_nope", e.key); st != 404 {
		t.Errorf("unknown batch: %d", st)
	}
	// Whole-file problems: the batch fails with errors.
	_, ud := e.upload(t, e.key, "user_data", "in.jsonl", chatLines(e.model, 2))
	_, nj := e.upload(t, e.key, "batch", "in.txt", []byte("hello\nworld\n"))
	for fid, code := range map[string]string{ud["id"].(string): batch.CodeInvalidPurpose, nj["id"].(string): batch.CodeInvalidFileFormat} {
		b := e.createBatch(t, e.key, fid)
		b = e.wait(t, b.ID, 20*time.Second, "failed", "completed")
		if b.Status != "failed" || b.Errors == nil || len(b.Errors.Data) == 0 || b.Errors.Data[0].Code != code {
			t.Errorf("file %s: %+v, want failed with %s", fid, b, code)
		}
	}
	// Another user does not see the batch.
	b := e.createBatch(t, e.key, id)
	if st, _ := e.raw(t, "GET", "/v1/batches/"+b.ID, other); st != 404 {
		t.Errorf("another user's batch: %d", st)
	}
	var list struct{ Data []map[string]any }
	e.do(t, "GET", "/v1/batches?limit=2", e.key, "", &list)
	if len(list.Data) != 2 || list.Data[0]["id"] != b.ID {
		t.Errorf("list: %+v", list)
	}
}

// TestBatchInsufficientFunds: lines past the user's credit fail with
// insufficient_quota; only the lines that ran are billed, and no hold is
// left.
func TestBatchInsufficientFunds(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, "", nil)
	uid := e.userID(t)
	// The credit covers three and a half lines' holds (at the batch price).
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"line 0"}],"max_tokens":8}`, e.model)
	req, err := openai.Parse("/v1/chat/completions", []byte(body), e.cfg.ForUser(uid), openai.Limits{BytesPerTokenFloor: e.cfg.Server.BytesPerTokenFloor})
	if err != nil {
		t.Fatal(err)
	}
	p, c := e.adm.Bounds(admission.Request{Model: req.Model, PromptBytes: req.PromptBytes, ExtraTokens: req.ExtraTokens,
		Messages: req.Messages, MaxTokens: req.MaxTokens, Room: req.Room, Prompts: req.Prompts, Choices: req.Choices})
	hold := (p*1 + c*2 + 1) / 2 // a line is held at the batch price: batch_discount 0.5
	e.grant(t, uid, hold*7/2)
	e.startDriver(t, "d1")
	const n = 40 // what a line uses is well under its hold: more run than 3.5
	_, f := e.upload(t, e.key, "batch", "in.jsonl", chatLines(e.model, n))
	b := e.createBatch(t, e.key, f["id"].(string))
	b = e.wait(t, b.ID, 60*time.Second, "completed", "failed")
	quota := 0
	for _, l := range e.fileLines(t, b.ErrorFileID) {
		if l.Error != nil && l.Error.Code == "insufficient_quota" {
			quota++
		}
	}
	ran := len(e.fileLines(t, b.OutputFileID))
	t.Logf("%d lines, credit %d micro-dollars (a line holds %d): %d ran, %d insufficient_quota", n, hold*7/2, hold, ran, quota)
	if ran == 0 || quota == 0 || ran+quota != n || b.RequestCounts.Completed != ran {
		t.Fatalf("ran %d, refused %d: %+v", ran, quota, b)
	}
	time.Sleep(500 * time.Millisecond)
	if rows := e.ledgerRows(t, uid); rows != ran {
		t.Fatalf("ledger rows %d, want %d", rows, ran)
	}
	live, _ := admission.LiveCounters(context.Background(), e.rdb, uid)
	if live.Holds != 0 || live.HeldCredit != 0 || live.Credit < 0 {
		t.Fatalf("left after the batch: %+v", live)
	}
}

// TestBatchCancel: a slow batch (lines_per_minute 4) is cancelled: it ends
// cancelled, lines not run are batch_cancelled, and no hold is left.
func TestBatchCancel(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, ", lines_per_minute: 4", nil)
	uid := e.userID(t)
	e.grant(t, uid, 1_000_000)
	e.startDriver(t, "d1")
	_, f := e.upload(t, e.key, "batch", "in.jsonl", chatLines(e.model, 20))
	b := e.createBatch(t, e.key, f["id"].(string))
	e.wait(t, b.ID, 20*time.Second, "in_progress")
	time.Sleep(300 * time.Millisecond)
	var c batchObj
	if r := e.do(t, "POST", "/v1/batches/"+b.ID+"/cancel", e.key, "", &c); r.StatusCode != 200 || (c.Status != "cancelling" && c.Status != "cancelled") {
		t.Fatalf("cancel: %d %+v", r.StatusCode, c)
	}
	b = e.wait(t, b.ID, 20*time.Second, "cancelled")
	ran := len(e.fileLines(t, b.OutputFileID))
	cancelled := 0
	for _, l := range e.fileLines(t, b.ErrorFileID) {
		if l.Error != nil && l.Error.Code == batch.CodeBatchCancelled {
			cancelled++
		}
	}
	t.Logf("cancelled batch: %d ran, %d batch_cancelled", ran, cancelled)
	if ran > 4 || ran+cancelled != 20 {
		t.Fatalf("ran %d, cancelled %d", ran, cancelled)
	}
	// The lines that ran give their holds back when they settle, which a
	// loaded machine does later.
	live, _ := admission.LiveCounters(context.Background(), e.rdb, uid)
	for deadline := time.Now().Add(20 * time.Second); (live.Holds != 0 || live.HeldCredit != 0) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		live, _ = admission.LiveCounters(context.Background(), e.rdb, uid)
	}
	if live.Holds != 0 || live.HeldCredit != 0 {
		t.Fatalf("holds left after cancel: %+v", live)
	}
	if r := e.do(t, "POST", "/v1/batches/"+b.ID+"/cancel", e.key, "", nil); r.StatusCode != 200 {
		t.Fatalf("cancel again: %d", r.StatusCode)
	}
}

// TestBatchResume: the driver stops mid-batch without giving its lease
// back (as a killed process); another takes the batch over once the lease
// lapses and finishes it. Every line is once in the output and billed once.
func TestBatchResume(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, ", lines_in_flight: 3", nil)
	uid := e.userID(t)
	e.grant(t, uid, 1_000_000)
	const n = 40
	_, f := e.upload(t, e.key, "batch", "in.jsonl", chatLines(e.model, n))
	stop := e.startDriverOn(t, "first", crashed{e.db})
	b := e.createBatch(t, e.key, f["id"].(string))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var cur batchObj
		e.do(t, "GET", "/v1/batches/"+b.ID, e.key, "", &cur)
		if cur.RequestCounts.Completed >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", cur)
		}
	}
	stop()
	var mid batchObj
	e.do(t, "GET", "/v1/batches/"+b.ID, e.key, "", &mid)
	t.Logf("first driver stopped at %d of %d lines", mid.RequestCounts.Completed, n)
	e.startDriver(t, "second")
	b = e.wait(t, b.ID, 60*time.Second, "completed")
	out := e.fileLines(t, b.OutputFileID)
	seen := map[string]bool{}
	for _, l := range out {
		seen[*l.CustomID] = true
	}
	if len(out) != n || len(seen) != n || b.ErrorFileID != "" {
		t.Fatalf("output %d lines, %d ids, error file %q", len(out), len(seen), b.ErrorFileID)
	}
	time.Sleep(500 * time.Millisecond)
	if rows := e.ledgerRows(t, uid); rows != n {
		t.Fatalf("ledger rows %d, want %d", rows, n)
	}
}

// TestBatchExpires: a batch whose 24h window has ended (moved back in the
// database while no driver held it) ends expired: what ran is in the
// output, the rest batch_expired, no hold left.
func TestBatchExpires(t *testing.T) {
	t.Parallel()
	e := setupBatches(t, strictTier, ", lines_per_minute: 4", nil)
	uid := e.userID(t)
	e.grant(t, uid, 1_000_000)
	_, f := e.upload(t, e.key, "batch", "in.jsonl", chatLines(e.model, 12))
	stop := e.startDriver(t, "d1")
	b := e.createBatch(t, e.key, f["id"].(string))
	e.wait(t, b.ID, 20*time.Second, "in_progress")
	time.Sleep(500 * time.Millisecond)
	stop()
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE batches SET expires_at = NOW() - interval '1 second' WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	e.startDriver(t, "d2")
	b = e.wait(t, b.ID, 20*time.Second, "expired")
	ran := len(e.fileLines(t, b.OutputFileID))
	expired := 0
	for _, l := range e.fileLines(t, b.ErrorFileID) {
		if l.Error != nil && l.Error.Code == batch.CodeBatchExpired {
			expired++
		}
	}
	t.Logf("expired batch: %d ran, %d batch_expired", ran, expired)
	if expired == 0 || ran+expired != 12 {
		t.Fatalf("ran %d, expired %d", ran, expired)
	}
	time.Sleep(500 * time.Millisecond)
	if live, _ := admission.LiveCounters(context.Background(), e.rdb, uid); live.Holds != 0 || live.HeldCredit != 0 {
		t.Fatalf("holds left: %+v", live)
	}
}

// TestPresignedUpload: a file too large for one request on Lambda goes
// straight to the bucket through a presigned URL; completing it checks the
// limits (a batch file of too many lines is refused and nothing stays).
func TestPresignedUpload(t *testing.T) {
	t.Parallel()
	st := s3test.New(t)
	st.EnsureBucket(context.Background()) //nolint:errcheck
	e := setupBatches(t, strictTier, "", batch.S3{Store: st, Prefix: "files/"})
	put := func(url string, body []byte) {
		t.Helper()
		req, _ := http.NewRequest("PUT", url, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT to the upload URL: %d %s", resp.StatusCode, b)
		}
	}
	var up struct {
		ID        string `json:"id"`
		UploadURL string `json:"upload_url"`
	}
	var m map[string]any
	if r := e.do(t, "POST", "/v1/files/uploads", e.key, `{"filename":"big.jsonl","purpose":"batch"}`, &up); r.StatusCode != 200 || up.UploadURL == "" {
		t.Fatalf("create upload: %d %+v", r.StatusCode, up)
	}
	if st, _ := e.raw(t, "GET", "/v1/files/"+up.ID, e.key); st != 404 {
		t.Fatalf("a pending upload is visible: %d", st)
	}
	content := chatLines(e.model, 5)
	put(up.UploadURL, content)
	if r := e.do(t, "POST", "/v1/files/"+up.ID+"/complete", e.key, "", &m); r.StatusCode != 200 || m["bytes"] != float64(len(content)) || m["status"] != "processed" {
		t.Fatalf("complete: %d %v", r.StatusCode, m)
	}
	if st, b := e.raw(t, "GET", "/v1/files/"+up.ID+"/content", e.key); st != 200 || !bytes.Equal(b, content) {
		t.Fatalf("content: %d", st)
	}
	// Too many lines: refused at completion, nothing left.
	e.do(t, "POST", "/v1/files/uploads", e.key, `{"filename":"many.jsonl","purpose":"batch"}`, &up)
	put(up.UploadURL, chatLines(e.model, 201))
	m = nil
	if r := e.do(t, "POST", "/v1/files/"+up.ID+"/complete", e.key, "", &m); r.StatusCode != 400 {
		t.Fatalf("too many lines: %d %v", r.StatusCode, m)
	}
	if r := e.do(t, "POST", "/v1/files/"+up.ID+"/complete", e.key, "", nil); r.StatusCode != 404 {
		t.Fatalf("a refused upload can be completed again: %d", r.StatusCode)
	}
	if _, err := st.List(context.Background(), "files/"+e.userID(t)+"/"+up.ID); err != nil {
		t.Fatal(err)
	}
	if objs, _ := st.List(context.Background(), "files/"+e.userID(t)+"/"+up.ID); len(objs) != 0 {
		t.Fatalf("refused upload's content left: %v", objs)
	}
	if r := e.do(t, "POST", "/v1/files/uploads", e.key, `{"filename":"x","purpose":"fine-tune"}`, nil); r.StatusCode != 400 {
		t.Fatalf("bad purpose: %d", r.StatusCode)
	}
}
