//go:build !shrinkwrap

package submit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/functions/submit"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// respEnv is env with the simulator logging every request body it gets
// (--log-http), so a test can read what the engine received.
type respEnv struct {
	*env
	simLog string
	simURL string
}

// setupResponses starts submit (with the stored-response store), a worker
// on the simulator and the settler. Users of tier "tiny" have little credit.
func setupResponses(t *testing.T, simArgs ...string) *respEnv {
	t.Helper()
	return setupResponsesYAML(t, "", simArgs...)
}

// setupResponsesYAML is setupResponses with extra configuration appended.
func setupResponsesYAML(t *testing.T, extra string, simArgs ...string) *respEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	model := testenv.Name("resp")
	simLog := filepath.Join(t.TempDir(), "sim.log")
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), model, 1024, 4, simLog, append([]string{"--log-http"}, simArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
inference: {models: [{name: %s, max_batch_size: 4, max_model_len: 1024, endpoints: [%q]}]}
pricing: {%s: {input_tokens: 0.000001, output_tokens: 0.000001}}
worker: {usage_flush: 20ms}
tiers:
  free: {rate_limit: unlimited, included_credits: unlimited, tokens_per_minute: unlimited, concurrency: unlimited}
  tiny: {rate_limit: unlimited, included_credits: 0, tokens_per_minute: unlimited, concurrency: unlimited, max_tokens: 64}
`, model, sim.URL, model) + extra))
	if err != nil {
		t.Fatal(err)
	}
	b := startBackend(t, ctx, cancel, cfg, model, redisq.Options{})
	log, db, rdb, q, adm := b.log, b.db, b.rdb, b.q, b.adm
	srv := httptest.NewServer(submit.New(submit.Deps{Config: cfg, Log: log, Queue: q, Verifier: app.NewVerifier(cfg, db, log),
		Admission: adm, Responses: db}))
	t.Cleanup(srv.Close)
	e := &env{url: srv.URL, model: model, db: db, cfg: cfg, rdb: rdb}
	e.key = e.newKey(t, model+"@example.com")
	return &respEnv{env: e, simLog: simLog, simURL: sim.URL}
}

// tierKey creates a user of tier with micros of prepaid credit and an API
// key for them.
func (e *env) tierKey(t *testing.T, email, tier string, micros int64) string {
	t.Helper()
	ctx := context.Background()
	u, err := e.db.UpsertUser(ctx, email, tier, "user")
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.db.LedgerGrant(ctx, u.ID, sluice.CalendarPeriod(time.Now()), micros, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := admission.Grant(ctx, e.rdb, u.ID, id, micros); err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.CreateKey(ctx, postgres.NewKey{UserID: u.ID, Name: "test", Hash: apikey.Hash([]byte(e.cfg.Env.KeyPepper), key),
		Prefix: apikey.Display(key)}); err != nil {
		t.Fatal(err)
	}
	return key
}

// responseObj is what the tests read of a response object.
type responseObj struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Status             string            `json:"status"`
	Model              string            `json:"model"`
	Store              bool              `json:"store"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Metadata           map[string]string `json:"metadata"`
	Output             []struct {
		Type    string `json:"type"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"output"`
	Usage struct {
		InputTokens  int64 `json:"input_tokens"`
		OutputTokens int64 `json:"output_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}

func (r responseObj) text() string {
	var b strings.Builder
	for _, o := range r.Output {
		for _, c := range o.Content {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// usageRow waits for the job's usage row and returns its token counts.
func (e *env) usageRow(t *testing.T, jobID string) (prompt, completion int64) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := e.db.Pool.QueryRow(context.Background(),
			`SELECT prompt_tokens, completion_tokens FROM inference_requests WHERE job_id = $1`, jobID).Scan(&prompt, &completion)
		if err == nil {
			return prompt, completion
		}
		if time.Now().After(deadline) {
			t.Fatalf("no usage row for %s: %v", jobID, err)
		}
	}
}

// engineBodies are the /v1/responses request bodies the simulator logged.
func (e *respEnv) engineBodies(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(e.simLog)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, `body="`)
		if i < 0 || !strings.Contains(line, `\"input\"`) {
			continue
		}
		var s string
		if err := json.Unmarshal([]byte(line[i+len("body="):]), &s); err != nil {
			t.Fatalf("simulator log line %q: %v", line, err)
		}
		out = append(out, s)
	}
	return out
}

// TestResponses: plain and streamed /v1/responses through the real stack;
// stored, read back and deleted by the owner only; a previous_response_id
// chain expanded by Sluice, which sends the engine neither store nor
// previous_response_id; usage rows equal to the engine's usage; expiry.
func TestResponses(t *testing.T) {
	t.Parallel()
	e := setupResponses(t)
	other := e.newKey(t, "other-"+e.model+"@example.com")

	// Plain, store given explicitly (it must not reach the engine).
	var plain responseObj
	resp := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":"FIRST-TURN-MARKER hello","max_output_tokens":8,
		"instructions":"be brief","temperature":0.5,"top_p":0.9,"store":true,"metadata":{"k":"v"},"user":"u-1"}`, e.model), &plain)
	jobID := resp.Header.Get("Sluice-Job-Id")
	if resp.StatusCode != 200 || plain.Object != "response" || plain.Status != "completed" || plain.ID != sluice.ResponseID(jobID) ||
		!strings.HasPrefix(plain.ID, "resp_") || plain.text() == "" || !plain.Store || plain.Metadata["k"] != "v" || plain.PreviousResponseID != nil {
		t.Fatalf("plain: %d %+v (job %s)", resp.StatusCode, plain, jobID)
	}
	if plain.Usage.InputTokens == 0 || plain.Usage.OutputTokens == 0 || plain.Usage.OutputTokens > 8 {
		t.Fatalf("plain usage %+v", plain.Usage)
	}
	p, c := e.usageRow(t, jobID)
	if p != plain.Usage.InputTokens || c != plain.Usage.OutputTokens {
		t.Fatalf("usage row %d/%d, engine said %d/%d", p, c, plain.Usage.InputTokens, plain.Usage.OutputTokens)
	}
	t.Logf("plain: %s %q usage in=%d out=%d; usage row %d/%d", plain.ID, plain.text(), plain.Usage.InputTokens, plain.Usage.OutputTokens, p, c)

	// GET: the owner's only.
	var got responseObj
	if r := e.do(t, "GET", "/v1/responses/"+plain.ID, e.key, "", &got); r.StatusCode != 200 || got.ID != plain.ID || got.text() != plain.text() {
		t.Fatalf("GET: %d %+v", r.StatusCode, got)
	}
	var ae apiError
	if r := e.do(t, "GET", "/v1/responses/"+plain.ID, other, "", &ae); r.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "not_found" {
		t.Fatalf("another user's GET: %d %+v", r.StatusCode, ae)
	}
	if r := e.do(t, "DELETE", "/v1/responses/"+plain.ID, other, "", &ae); r.StatusCode != 404 {
		t.Fatalf("another user's DELETE: %d", r.StatusCode)
	}

	// Streamed: the Responses event types, named, with usage at the end.
	sresp := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":[{"role":"user","content":[{"type":"input_text","text":"stream please"}]}],
		"max_output_tokens":6,"stream":true}`, e.model), nil)
	if sresp.StatusCode != 200 || !strings.HasPrefix(sresp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", sresp.StatusCode, sresp.Header.Get("Content-Type"))
	}
	var types []string
	var completed struct {
		Response responseObj `json:"response"`
	}
	var deltas strings.Builder
	sc := bufio.NewScanner(sresp.Body)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			event = name
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			t.Fatal("a Responses stream ends without [DONE], as OpenAI's does")
		}
		var ev struct {
			Type  string `json:"type"`
			Delta string `json:"delta"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Type == "" || ev.Type != event {
			t.Fatalf("event %q data %s: %v", event, data, err)
		}
		types = append(types, ev.Type)
		deltas.WriteString(ev.Delta)
		if ev.Type == "response.completed" {
			json.Unmarshal([]byte(data), &completed) //nolint:errcheck
		}
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	for _, w := range want {
		found := false
		for _, g := range types {
			found = found || g == w
		}
		if !found {
			t.Fatalf("stream lacks %s: %v", w, types)
		}
	}
	sjob := sresp.Header.Get("Sluice-Job-Id")
	cr := completed.Response
	if types[0] != "response.created" || types[len(types)-1] != "response.completed" || cr.ID != sluice.ResponseID(sjob) ||
		cr.Usage.OutputTokens == 0 || cr.text() != deltas.String() {
		t.Fatalf("stream: types %v, completed %+v, deltas %q", types, cr, deltas.String())
	}
	p, c = e.usageRow(t, sjob)
	if p != cr.Usage.InputTokens || c != cr.Usage.OutputTokens {
		t.Fatalf("streamed usage row %d/%d, engine said %d/%d", p, c, cr.Usage.InputTokens, cr.Usage.OutputTokens)
	}
	t.Logf("stream: %d events %v; usage in=%d out=%d; usage row %d/%d", len(types), types, cr.Usage.InputTokens, cr.Usage.OutputTokens, p, c)
	if r := e.do(t, "GET", "/v1/responses/"+cr.ID, e.key, "", &got); r.StatusCode != 200 || got.text() != cr.text() {
		t.Fatalf("GET of the streamed response: %d %+v", r.StatusCode, got)
	}

	// A job run twice (its worker stored the response, then died before
	// completing it) stores once: the row is keyed by the response id, the
	// run that completes wins, and another user's row is never touched.
	ctx := context.Background()
	var owner, otherID string
	if err := e.db.Pool.QueryRow(ctx, `SELECT user_id FROM stored_responses WHERE id = $1`, cr.ID).Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, "other-"+e.model+"@example.com").Scan(&otherID); err != nil {
		t.Fatal(err)
	}
	rerun := sluice.StoredResponse{ID: cr.ID, UserID: owner, Model: e.model, Input: json.RawMessage(`[]`),
		Response: json.RawMessage(`{"id":"` + cr.ID + `","object":"response","output":[],"rerun":true}`), ExpiresAt: time.Now().Add(time.Hour)}
	for _, r := range []sluice.StoredResponse{rerun, rerun} {
		if err := e.db.PutResponse(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	hijack := rerun
	hijack.UserID, hijack.Response = otherID, json.RawMessage(`{"hijacked":true}`)
	if err := e.db.PutResponse(ctx, hijack); err != nil {
		t.Fatal(err)
	}
	var rows int
	var kept string
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*), min(response::text) FROM stored_responses WHERE id = $1`, cr.ID).Scan(&rows, &kept); err != nil ||
		rows != 1 || !strings.Contains(kept, `"rerun": true`) {
		t.Fatalf("stored %d rows for one id (%s): %v", rows, kept, err)
	}

	// A chain: Sluice expands previous_response_id into the input.
	var second responseObj
	resp = e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":"SECOND-TURN-MARKER go on","previous_response_id":%q,"max_output_tokens":8}`,
		e.model, plain.ID), &second)
	if resp.StatusCode != 200 || second.PreviousResponseID == nil || *second.PreviousResponseID != plain.ID {
		t.Fatalf("chained: %d %+v", resp.StatusCode, second)
	}
	if second.Usage.InputTokens <= plain.Usage.InputTokens {
		t.Fatalf("the chained request's input (%d tokens) must hold the history (%d before)", second.Usage.InputTokens, plain.Usage.InputTokens)
	}
	var third responseObj
	resp = e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":"THIRD-TURN-MARKER","previous_response_id":%q,"max_output_tokens":4,"store":false}`,
		e.model, second.ID), &third)
	if resp.StatusCode != 200 || third.Store {
		t.Fatalf("third: %d %+v", resp.StatusCode, third)
	}
	bodies := e.engineBodies(t)
	var chained string
	for _, b := range bodies {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal([]byte(b), &keys); err != nil {
			t.Fatalf("engine body %s: %v", b, err)
		}
		for _, k := range []string{"store", "previous_response_id", "metadata"} {
			if _, ok := keys[k]; ok {
				t.Fatalf("the engine received %q: %s", k, b)
			}
		}
		if strings.Contains(b, "THIRD-TURN-MARKER") {
			chained = b
		}
	}
	for _, must := range []string{"FIRST-TURN-MARKER", plain.text(), "SECOND-TURN-MARKER", second.text(), "THIRD-TURN-MARKER"} {
		if !strings.Contains(chained, must) {
			t.Fatalf("the engine's input for the third turn lacks %q: %s", must, chained)
		}
	}
	if strings.Contains(chained, "be brief") {
		t.Fatalf("instructions are not carried over a chain (as OpenAI): %s", chained)
	}
	t.Logf("engine received %d bodies, none with store/previous_response_id/metadata; third turn's body: %s", len(bodies), chained)

	// store:false is not kept; another user's previous_response_id is a 404.
	if r := e.do(t, "GET", "/v1/responses/"+third.ID, e.key, "", &ae); r.StatusCode != 404 {
		t.Fatalf("a store:false response was kept: %d", r.StatusCode)
	}
	if r := e.do(t, "POST", "/v1/responses", other, fmt.Sprintf(`{"model":%q,"input":"x","previous_response_id":%q}`, e.model, plain.ID), &ae); r.StatusCode != 404 ||
		ae.Error.Param == nil || *ae.Error.Param != "previous_response_id" || *ae.Error.Code != "not_found" {
		t.Fatalf("another user's previous_response_id: %d %+v", r.StatusCode, ae)
	}

	// DELETE: OpenAI's shape, then gone.
	var del struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}
	if r := e.do(t, "DELETE", "/v1/responses/"+second.ID, e.key, "", &del); r.StatusCode != 200 || del.ID != second.ID || !del.Deleted || del.Object != "response" {
		t.Fatalf("DELETE: %d %+v", r.StatusCode, del)
	}
	if r := e.do(t, "GET", "/v1/responses/"+second.ID, e.key, "", &ae); r.StatusCode != 404 {
		t.Fatalf("GET after DELETE: %d", r.StatusCode)
	}
	if r := e.do(t, "DELETE", "/v1/responses/"+second.ID, e.key, "", &ae); r.StatusCode != 404 {
		t.Fatalf("DELETE twice: %d", r.StatusCode)
	}

	// Expiry: enforced on read, rows swept.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE stored_responses SET expires_at = NOW() - interval '1 second' WHERE id = $1`, plain.ID); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/v1/responses/"+plain.ID, e.key, "", &ae); r.StatusCode != 404 {
		t.Fatalf("GET of an expired response: %d", r.StatusCode)
	}
	if r := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":"x","previous_response_id":%q}`, e.model, plain.ID), &ae); r.StatusCode != 404 {
		t.Fatalf("previous_response_id of an expired response: %d", r.StatusCode)
	}
	n, err := e.db.SweepResponses(ctx)
	if err != nil || n < 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
}

// TestResponsesHoldCoversHistory: the funds hold covers the expanded
// history, so a user with little credit is refused a long chain while the
// same new input alone is still admitted.
func TestResponsesHoldCoversHistory(t *testing.T) {
	t.Parallel()
	e := setupResponses(t)
	// $0.003 of credit: 3,000 tokens at $1 per million; 500 bytes a turn.
	key := e.tierKey(t, "tiny-"+e.model+"@example.com", "tiny", 3000)
	turn := strings.Repeat("word ", 100)
	var ae apiError
	if r := e.do(t, "POST", "/v1/responses", key, fmt.Sprintf(`{"model":%q,"input":"x","max_output_tokens":100}`, e.model), &ae); r.StatusCode != 400 ||
		ae.Error.Param == nil || *ae.Error.Param != "max_output_tokens" {
		t.Fatalf("past the tier's max_tokens: %d %+v", r.StatusCode, ae)
	}
	prev := ""
	for i := 1; ; i++ {
		if i > 8 {
			t.Fatal("a chain of 8 turns was never refused")
		}
		body := fmt.Sprintf(`{"model":%q,"input":%q,"max_output_tokens":16}`, e.model, turn)
		if prev != "" {
			body = fmt.Sprintf(`{"model":%q,"input":%q,"max_output_tokens":16,"previous_response_id":%q}`, e.model, turn, prev)
		}
		var out responseObj
		r := e.do(t, "POST", "/v1/responses", key, body, nil)
		b := new(strings.Builder)
		bufio.NewReader(r.Body).WriteTo(b) //nolint:errcheck
		if r.StatusCode == 200 {
			if err := json.Unmarshal([]byte(b.String()), &out); err != nil {
				t.Fatal(err)
			}
			prev = out.ID
			t.Logf("turn %d admitted: engine input %d tokens, output %d", i, out.Usage.InputTokens, out.Usage.OutputTokens)
			continue
		}
		json.Unmarshal([]byte(b.String()), &ae) //nolint:errcheck
		if r.StatusCode != 429 || ae.Error.Code == nil || *ae.Error.Code != "insufficient_quota" {
			t.Fatalf("turn %d: %d %s", i, r.StatusCode, b)
		}
		// The same input without the history fits what is left, once the
		// earlier turns have settled (their holds are given back
		// asynchronously, later under load): a refusal costs nothing, so
		// ask again for a while.
		alone := fmt.Sprintf(`{"model":%q,"input":%q,"max_output_tokens":16,"store":false}`, e.model, turn)
		st := 0
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			r := e.do(t, "POST", "/v1/responses", key, alone, nil)
			r.Body.Close()
			if st = r.StatusCode; st != 429 || time.Now().After(deadline) {
				break
			}
		}
		if st != 200 {
			t.Fatalf("the new input alone: %d", st)
		}
		t.Logf("turn %d of the chain refused (429 insufficient_quota: %s); the same input alone admitted", i, ae.Error.Message)
		return
	}
}

// TestResponsesErrors: OpenAI-shaped refusals of bad Responses bodies.
func TestResponsesErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cases := []struct {
		name, body  string
		status      int
		code, param string
	}{
		{"case variant", `{"model":%q,"input":"hi","INPUT":"x"}`, 400, "duplicate_key", "INPUT"},
		{"duplicate", `{"model":%q,"input":"hi","input":"x"}`, 400, "duplicate_key", "input"},
		{"unknown field", `{"model":%q,"input":"hi","background":true}`, 400, "unknown_parameter", "background"},
		{"no input", `{"model":%q}`, 400, "missing_required_parameter", "input"},
		{"bad item", `{"model":%q,"input":[{"type":"item_reference","id":"x"}]}`, 400, "invalid_value", "input[0].type"},
		{"item key", `{"model":%q,"input":[{"role":"user","content":"x","Content":"y"}]}`, 400, "duplicate_key", "input[0].Content"},
		{"max_output_tokens", `{"model":%q,"input":"hi","max_output_tokens":5000}`, 400, "context_length_exceeded", "max_output_tokens"},
		{"metadata", `{"model":%q,"input":"hi","metadata":{"k":1}}`, 400, "invalid_value", "metadata"},
		{"no store here", `{"model":%q,"input":"hi","previous_response_id":"resp_nope"}`, 404, "not_found", "previous_response_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ae apiError
			r := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(c.body, e.model), &ae)
			if r.StatusCode != c.status || ae.Error.Code == nil || *ae.Error.Code != c.code || ae.Error.Param == nil || *ae.Error.Param != c.param {
				t.Fatalf("%d %+v, want %d %s %s", r.StatusCode, ae.Error, c.status, c.code, c.param)
			}
		})
	}
	var ae apiError
	if r := e.do(t, "GET", "/v1/responses/resp_nope", e.key, "", &ae); r.StatusCode != 404 || *ae.Error.Code != "not_found" {
		t.Fatalf("GET unknown: %d %+v", r.StatusCode, ae)
	}
}

// TestResponsesCutStream: a streamed response whose client leaves after a
// few deltas is cancelled and billed as a cut chat stream is: the output it
// produced, and its prompt as the engine's /tokenize counts it.
func TestResponsesCutStream(t *testing.T) {
	t.Parallel()
	e := setupResponses(t, "--inter-token-latency", "40ms")
	// The simulator's answers have random lengths: ask until one is long
	// enough to be cut after 3 deltas, and still running when the cut
	// reaches its worker (a short one may end first: 40 ms a token, and a
	// loaded machine; that is no cut, and its row says succeeded).
	var jobID, status string
	var prompt, completion int64
	deltas := 0
	for try := 0; deltas < 3 || status != "cancelled"; try++ {
		if try == 20 {
			t.Fatalf("no answer of 3 deltas cut while running in 20 tries (last: %d deltas, %s)", deltas, status)
		}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/responses", strings.NewReader(fmt.Sprintf(
			`{"model":%q,"instructions":"be long","input":"tell me a long story","max_output_tokens":200,"stream":true}`, e.model)))
		req.Header.Set("Authorization", "Bearer "+e.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			cancel()
			t.Fatalf("%v %v", resp, err)
		}
		jobID = resp.Header.Get("Sluice-Job-Id")
		sc := bufio.NewScanner(resp.Body)
		deltas = 0
		for deltas < 3 && sc.Scan() {
			if sc.Text() == "event: response.output_text.delta" {
				deltas++
			}
		}
		cancel() // the client leaves
		resp.Body.Close()
		status = ""
		if deltas < 3 {
			continue
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			err := e.db.Pool.QueryRow(context.Background(),
				`SELECT prompt_tokens, completion_tokens, status FROM inference_requests WHERE job_id = $1`, jobID).Scan(&prompt, &completion, &status)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no usage row for the cut job %s: %v", jobID, err)
			}
		}
		switch status {
		case "cancelled":
		case "succeeded":
			t.Logf("try %d: the answer ended (%d tokens) before the cut reached it; again", try, completion)
		default:
			t.Fatalf("cut stream's usage row says %s", status)
		}
	}
	tok, err := http.Post(e.simURL+"/tokenize", "application/json", strings.NewReader(fmt.Sprintf(
		`{"model":%q,"messages":[{"role":"system","content":"be long"},{"role":"user","content":"tell me a long story"}]}`, e.model)))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Body.Close()
	var count struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(tok.Body).Decode(&count); err != nil {
		t.Fatal(err)
	}
	if status != "cancelled" || completion < 3 || completion >= 200 || prompt != count.Count || prompt == 0 {
		t.Fatalf("cut stream billed %s prompt=%d completion=%d; want cancelled, prompt %d (tokenized), 3 <= completion < 200", status, prompt, completion, count.Count)
	}
	t.Logf("cut after %d deltas: usage row %s prompt=%d (tokenize %d) completion=%d", deltas, status, prompt, count.Count, completion)
}

// TestResponsesOutputFilters: output filters apply to /v1/responses as to
// chat: the simulator in echo mode answers with the input, which carries
// secrets; neither the plain answer, nor the streamed deltas and done
// events, nor the stored responses read back show them.
func TestResponsesOutputFilters(t *testing.T) {
	t.Parallel()
	e := setupResponsesYAML(t, "filters: {enabled: true}\n", "--mode", "echo")
	const secret = "write to alice@example.com with key sk-sluice-AbCdEfGhIjKlMnOpQrStUv12 now"
	leaks := func(s string) bool { return strings.Contains(s, "alice@") || strings.Contains(s, "AbCdEf") }

	var plain responseObj
	resp := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":%q,"max_output_tokens":100}`, e.model, secret), &plain)
	if resp.StatusCode != 200 || leaks(plain.text()) || !strings.Contains(plain.text(), "[REDACTED:email]") {
		t.Fatalf("plain: %d %q", resp.StatusCode, plain.text())
	}
	var got responseObj
	if r := e.do(t, "GET", "/v1/responses/"+plain.ID, e.key, "", &got); r.StatusCode != 200 || got.text() != plain.text() {
		t.Fatalf("stored plain: %d %q", r.StatusCode, got.text())
	}

	sresp := e.do(t, "POST", "/v1/responses", e.key, fmt.Sprintf(`{"model":%q,"input":%q,"max_output_tokens":100,"stream":true}`, e.model, secret), nil)
	raw, err := io.ReadAll(sresp.Body)
	if err != nil || sresp.StatusCode != 200 {
		t.Fatalf("stream: %d %v", sresp.StatusCode, err)
	}
	var deltas strings.Builder
	var id string
	var seqs []int64
	for _, line := range strings.Split(string(raw), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type     string      `json:"type"`
			Delta    string      `json:"delta"`
			Seq      int64       `json:"sequence_number"`
			Response responseObj `json:"response"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		seqs = append(seqs, ev.Seq)
		if ev.Type == "response.output_text.delta" {
			deltas.WriteString(ev.Delta)
		}
		if ev.Type == "response.completed" {
			id = ev.Response.ID
		}
	}
	if leaks(string(raw)) || !strings.Contains(deltas.String(), "[REDACTED:api_key]") || id == "" {
		t.Fatalf("stream leaks or lacks its redacted text (deltas %q):\n%s", deltas.String(), raw)
	}
	for i := 1; i < len(seqs) && seqs[len(seqs)-1] > 0; i++ { // where the engine numbers its events
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence numbers not consecutive: %v", seqs)
		}
	}
	if r := e.do(t, "GET", "/v1/responses/"+id, e.key, "", &got); r.StatusCode != 200 || leaks(got.text()) || got.text() != deltas.String() {
		t.Fatalf("stored stream: %d %q, deltas %q", r.StatusCode, got.text(), deltas.String())
	}
	t.Logf("redacted: plain %q; streamed deltas %q", plain.text(), deltas.String())
}
