package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// The money drill's hostile requests: shapes a user who wants GPU time for
// free would send, mixed into the drill's jobs from all five users while
// the faults happen. Each carries a drill tag the engine proxy records, so
// that at the end every job's charge can be set against what the engine
// reported for it.

// Kinds of hostile request.
const (
	kindJob     = "plain job"    // the drill's ordinary async jobs
	kindCase    = "case-variant" // "MESSAGES"/"MAX_TOKENS"/"N" beside the real keys
	kindBatch   = "batched"      // a list of prompts on /v1/completions
	kindTools   = "tool schemas" // tools, tool_calls arguments, response_format
	kindCut     = "cut stream"   // the client disconnects mid-stream
	kindLong    = "long stream"  // cut by the death of its submit instance
	kindPoison  = "poison"       // its engine connection is reset
	cutAfter    = 10             // content chunks a cut stream reads
	hostilePerU = 2              // of each hostile kind, per user
)

// tracked is one request of the drill whose money is checked at the end.
type tracked struct {
	kind    string
	tag     string
	user    *drillUser
	jobID   string // "" when refused
	refused string // "400 <code>" or "429 insufficient_quota"; "" when admitted
	seen    int    // content chunks the client read (streams)
	// answered: the HTTP status of a try that was answered with an error
	// although it made a job (tracked on its own); 0 otherwise.
	answered int
	err      string
}

// tracker holds the tracked requests.
type tracker struct {
	mu   sync.Mutex
	reqs []*tracked
}

func (t *tracker) add(r *tracked) {
	t.mu.Lock()
	t.reqs = append(t.reqs, r)
	t.mu.Unlock()
}

func (t *tracker) all() []*tracked {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]*tracked(nil), t.reqs...)
}

// words makes a prompt of about n bytes.
func words(seed string, n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%s%d word%d ", seed, i%7, i)
	}
	return b.String()
}

// hostileBody returns the body (for /v1/jobs: the job's url and body) of
// one hostile request.
func hostileBody(kind, tag string) (url string, body string) {
	mark := "drill-tag:" + tag
	switch kind {
	case kindCase:
		// Real keys first, case variants last: a case-insensitive decoder
		// (Go's encoding/json) keeps the last, vLLM reads the exact ones.
		return "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":64,"n":3,"ignore_eos":true,`+
			`"MESSAGES":[{"role":"user","content":"hi"}],"MAX_TOKENS":1,"N":1}`, model, mark+" "+words("case", 600))
	case kindBatch:
		prompts := make([]string, 12)
		for i := range prompts {
			prompts[i] = fmt.Sprintf("batch prompt %d", i)
		}
		prompts[0] = mark + " " + prompts[0]
		js, _ := json.Marshal(prompts)
		return "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":%s,"max_tokens":24,"n":2,"ignore_eos":true}`, model, js)
	case kindTools:
		props := map[string]any{}
		for i := range 10 {
			props[fmt.Sprintf("field_%d", i)] = map[string]any{"type": "string", "description": words("tooldesc", 30)}
		}
		tools, _ := json.Marshal([]any{map[string]any{"type": "function", "function": map[string]any{
			"name": "lookup", "description": words("tool", 120), "parameters": map[string]any{"type": "object", "properties": props}}}})
		args, _ := json.Marshal(map[string]string{"query": words("arg", 400)})
		schema, _ := json.Marshal(map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "answer",
			"schema": map[string]any{"type": "object", "properties": props}}})
		return "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q},`+
			`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":%q}}]},`+
			`{"role":"tool","tool_call_id":"call_1","content":"ok"}],"tools":%s,"response_format":%s,"max_tokens":16,"ignore_eos":true}`,
			model, mark+" use the tool", string(args), tools, schema)
	case kindPoison:
		return "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":16,"ignore_eos":true}`,
			model, mark+" "+poisonMarker+" "+words("poison", 200))
	case kindCut, kindLong:
		n := 300
		if kind == kindLong {
			n = 600
		}
		return "/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"max_tokens":%d,"ignore_eos":true,"stream":true}`,
			model, mark+" "+words("stream", 200), n)
	}
	panic("unknown kind " + kind)
}

// postJob posts one async job, retrying through faults with the same
// Idempotency-Key. It returns the job's id, or why it was refused (400 or
// 429 insufficient_quota).
func (m *money) postJob(ctx context.Context, n int, u *drillUser, idem, body string) (id, refused string, err error) {
	var last string
	for attempt := 0; attempt < 300; attempt++ { // 60 s: past a stale Idempotency-Key mapping's 30 s
		base := m.bases[n%2]
		if m.s2dead.Load() {
			base = m.bases[0]
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/jobs", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+u.key)
		req.Header.Set("Idempotency-Key", idem)
		resp, err := m.hc.Do(req)
		if err != nil {
			last = err.Error()
			sleep(ctx, 200*time.Millisecond) //nolint:errcheck
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusAccepted:
			var js struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &js); err != nil {
				return "", "", err
			}
			return js.ID, "", nil
		case resp.StatusCode == http.StatusTooManyRequests && strings.Contains(string(b), sluice.CodeInsufficientQuota):
			return "", "429 " + sluice.CodeInsufficientQuota, nil
		case resp.StatusCode == http.StatusBadRequest:
			return "", "400 " + errCode(b), nil
		default: // 503 while Redis restarts (fail closed), or a dying instance
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			sleep(ctx, 200*time.Millisecond) //nolint:errcheck
		}
	}
	return "", "", fmt.Errorf("gave up: %s", last)
}

func errCode(b []byte) string {
	var e struct {
		Error struct {
			Code  string `json:"code"`
			Param string `json:"param"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e) //nolint:errcheck
	if e.Error.Param != "" {
		return e.Error.Code + " (" + e.Error.Param + ")"
	}
	return e.Error.Code
}

// sendHostile sends one hostile request of its kind and records the result.
func (m *money) sendHostile(ctx context.Context, n int, r *tracked) {
	url, body := hostileBody(r.kind, r.tag)
	if r.kind == kindCut || r.kind == kindLong {
		m.stream(ctx, r)
		return
	}
	id, refused, err := m.postJob(ctx, n, r.user, "hostile-"+r.tag, fmt.Sprintf(`{"url":%q,"body":%s}`, url, body))
	r.jobID, r.refused = id, refused
	if err != nil {
		r.err = err.Error()
	}
}

// stream sends a synchronous stream and reads it: a cut stream stops after
// cutAfter content chunks (the client disconnects); a long stream reads
// until its instance dies. 503s while Redis restarts are retried.
//
// Each try has its own tag: a try answered with an error may still have
// made a job (admitted and enqueued before the error), which is then
// tracked on its own.
func (m *money) stream(ctx context.Context, r *tracked) {
	base := m.bases[0]
	if r.kind == kindLong {
		base = m.bases[1]
	}
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	first := r.tag
	for attempt := 0; attempt < 120; attempt++ {
		if attempt > 0 {
			r.tag = fmt.Sprintf("%s-r%d", first, attempt)
		}
		url, body := hostileBody(r.kind, r.tag)
		// Bounded: a stream that never ends is reported, not waited on.
		sctx, cancel := context.WithTimeout(ctx, 100*time.Second)
		req, _ := http.NewRequestWithContext(sctx, http.MethodPost, base+url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+r.user.key)
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			r.err = err.Error()
			sleep(ctx, 250*time.Millisecond) //nolint:errcheck
			continue
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if id := resp.Header.Get("Sluice-Job-Id"); id != "" {
				m.track.add(&tracked{kind: r.kind, tag: r.tag, user: r.user, jobID: id, answered: resp.StatusCode})
			}
			switch {
			case resp.StatusCode == http.StatusTooManyRequests && strings.Contains(string(b), sluice.CodeInsufficientQuota):
				r.refused = "429 " + sluice.CodeInsufficientQuota
				return
			case resp.StatusCode == http.StatusBadRequest:
				r.refused = "400 " + errCode(b)
				return
			}
			r.err = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
			sleep(ctx, 250*time.Millisecond) //nolint:errcheck
			continue
		}
		r.jobID, r.err = resp.Header.Get("Sluice-Job-Id"), ""
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadBytes('\n')
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				r.seen += int(contentChunk(bytes.TrimSpace(data)))
			}
			if err != nil || (r.kind == kindCut && r.seen >= cutAfter) {
				if err != nil && sctx.Err() != nil && ctx.Err() == nil {
					r.err = "stream did not end within 100s"
					m.logf("%s %s (job %s): stream did not end within 100s after %d chunks", r.kind, r.tag, r.jobID, r.seen)
				}
				break
			}
		}
		cancel() // the client goes away mid-stream
		resp.Body.Close()
		return
	}
}

// hostilePlan is the list of hostile requests: each user sends hostilePerU
// of each kind, interleaved; one poison job.
func (m *money) hostilePlan() []*tracked {
	var out []*tracked
	for i := range hostilePerU {
		for _, kind := range []string{kindCase, kindBatch, kindTools, kindCut} {
			for ui, u := range m.users {
				out = append(out, &tracked{kind: kind, user: u, tag: fmt.Sprintf("h-%s-%d-%d", strings.ReplaceAll(kind[:4], " ", ""), ui, i)})
			}
		}
	}
	// The poison job last, after the faults (so that what it does is not
	// taken for theirs), from the user with most credit.
	return append(out, &tracked{kind: kindPoison, user: m.users[2], tag: "poison-0"})
}

// runHostile sends the plan spread over the regular jobs' submissions (the
// i-th request once 80%·i/len of them are submitted), so that hostile
// requests are in flight at each fault.
func (m *money) runHostile(ctx context.Context, submitted func() int64) *sync.WaitGroup {
	plan := m.hostilePlan()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, r := range plan {
			for submitted() < int64(i)*int64(m.o.jobs)*8/10/int64(len(plan)) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			m.track.add(r)
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.sendHostile(ctx, 100000+i, r)
			}()
		}
	}()
	return &wg
}

// ledgerRow is one job's usage ledger row (summed when, wrongly, several).
type ledgerRow struct {
	rows                    int
	prompt, completion, inc int64
	money                   int64 // -credit + overage, µ$
}

// value is the list price of prompt p and completion c tokens in µ$
// (1 and 2 µ$ a token).
func value(p, c int64) int64 { return p + 2*c }

// charged is the value the ledger row charged: included tokens pay prompt
// tokens first, then completion tokens, at list price; plus the money.
func (l ledgerRow) charged() int64 {
	incP := min(l.inc, l.prompt)
	return incP + 2*(l.inc-incP) + l.money
}

// window is a time span around a fault. An earlier attempt (one the job
// was retried after) cut in any window is the fault's; a job's last attempt
// cut in the window of a killed worker is work nobody alive can report
// (the reclaiming worker does not know what the dead one's engine call
// produced).
type window struct {
	what         string
	from, to     time.Time
	reporterDies bool // the worker that would report the usage died
}

// moneyCheck is the per-job comparison of charges against engine usage.
type moneyCheck struct {
	rows     [][3]string // check, result, detail
	failures []string
}

func (c *moneyCheck) add(name string, ok bool, detail string, a ...any) {
	res := "PASS"
	if !ok {
		res = "FAIL"
		c.failures = append(c.failures, name+": "+fmt.Sprintf(detail, a...))
	}
	c.rows = append(c.rows, [3]string{name, res, fmt.Sprintf(detail, a...)})
}

func (c *moneyCheck) info(name, detail string, a ...any) {
	c.rows = append(c.rows, [3]string{name, "info", fmt.Sprintf(detail, a...)})
}

// kindStats are one kind's figures for the table.
type kindStats struct {
	sent, admitted, refused400, refused429, errs int
	attempts, jobsDiffer                         int
	engineP, engineC, billedP, billedC, unbilled int64
	refusals                                     map[string]int
}

// checkHostile compares, per tracked job, the ledger's charge with the
// engine's usage, and prints the per-check table.
func (m *money) checkHostile(ctx context.Context, conn *pgx.Conn, w io.Writer) []string {
	reqs := m.track.all()
	m.px.Dump(filepath.Join(m.dir, "engine-attempts.json")) //nolint:errcheck // for a kept folder only
	ledger := map[string]*ledgerRow{}
	rows, err := conn.Query(ctx, `SELECT job_id, count(*), SUM(prompt_tokens)::bigint, SUM(completion_tokens)::bigint,
		SUM(included_tokens)::bigint, SUM(-credit_micros + overage_micros)::bigint FROM credit_ledger
		WHERE job_id IS NOT NULL AND kind IN ('usage', 'cache') GROUP BY job_id`)
	if err != nil {
		return []string{err.Error()}
	}
	for rows.Next() {
		var id string
		var l ledgerRow
		if err := rows.Scan(&id, &l.rows, &l.prompt, &l.completion, &l.inc, &l.money); err != nil {
			rows.Close()
			return []string{err.Error()}
		}
		ledger[id] = &l
	}
	rows.Close()

	stats := map[string]*kindStats{}
	kinds := []string{kindJob, kindCase, kindBatch, kindTools, kindCut, kindLong, kindPoison}
	for _, k := range kinds {
		stats[k] = &kindStats{refusals: map[string]int{}}
	}
	var differ []string
	differTags := map[string]bool{}
	var twice, refusedReached, lostInFault, unbilledRetry, cutPromptUnpaid, cutCompletionOff, cutStreams int
	var unbilledTotal, overbilled, lostValue int64
	var cutByOthers, erroredRan int
	var erroredEx []string
	var cutExamples []string
	var poisonLine string
	poisonOK := true
	for _, r := range reqs {
		st := stats[r.kind]
		if r.answered == 0 { // a try answered with an error is part of its request
			st.sent++
		}
		at := m.px.Attempts(r.tag)
		st.attempts += len(at)
		switch {
		case r.err != "" && r.jobID == "" && r.refused == "":
			st.errs++
			continue
		case r.refused != "":
			if strings.HasPrefix(r.refused, "400") {
				st.refused400++
			} else {
				st.refused429++
			}
			st.refusals[r.refused]++
			if len(at) > 0 {
				refusedReached++
				differTags[r.tag] = true
				differ = append(differ, fmt.Sprintf("%s %s refused (%s) but reached the engine %d×", r.kind, r.tag, r.refused, len(at)))
			}
			continue
		}
		st.admitted++
		if r.answered != 0 && len(at) > 0 {
			erroredRan++
			if len(erroredEx) < 3 {
				erroredEx = append(erroredEx, fmt.Sprintf("%s job %s answered %d, billed %d+%d", r.tag, r.jobID, r.answered, l0(ledger[r.jobID]).prompt, l0(ledger[r.jobID]).completion))
			}
		}
		l := ledger[r.jobID]
		if l == nil {
			l = &ledgerRow{}
		}
		if l.rows > 1 {
			twice++
		}
		st.billedP += l.prompt
		st.billedC += l.completion
		// What the engine did for this job: the last attempt is the one
		// billed; earlier ones were cut by a fault or retried.
		var wantP, wantC int64
		loC, hiC := int64(0), int64(0)
		exact, lost := true, false
		if len(at) > 0 {
			last := at[len(at)-1]
			for i, a := range at {
				// An attempt cut neither by a fault nor by its own client (a
				// cut stream's last attempt) was cut for someone else's sake.
				ownCut := i == len(at)-1 && (r.kind == kindCut || r.kind == kindLong)
				if a.Cut && !ownCut && !m.inWindow(a.End, false) {
					cutByOthers++
					if len(cutExamples) < 3 {
						cutExamples = append(cutExamples, fmt.Sprintf("%s at %s", r.tag, a.End.Format("15:04:05.000")))
					}
				}
			}
			for _, a := range at[:len(at)-1] {
				if a.Reset {
					continue
				}
				if m.inWindow(a.End, false) {
					lostInFault++
					lostValue += value(max(a.PromptTokens, 0), a.CompletionTokens)
				} else if a.PromptTokens+a.CompletionTokens > 0 {
					unbilledRetry++
					differTags[r.tag] = true
					unbilledTotal += value(max(a.PromptTokens, 0), a.CompletionTokens)
					differ = append(differ, fmt.Sprintf("%s %s: an earlier attempt's engine usage %d+%d was not billed (retried outside a fault)",
						r.kind, r.tag, a.PromptTokens, a.CompletionTokens))
				}
			}
			switch {
			case last.Reported:
				wantP, wantC = last.PromptTokens, last.CompletionTokens
			case last.Reset:
				wantP = last.PromptTokens
				resets := 0
				for _, a := range at {
					if a.Reset {
						resets++
					}
				}
				// Pays its prompt: once, or once per attempt the engine got.
				if l.completion == 0 && l.prompt > 0 && wantP > 0 && l.prompt%wantP == 0 && l.prompt/wantP <= int64(resets) {
					wantP = l.prompt
				}
			case last.Cut && m.inWindow(last.End, true) && l.prompt+l.completion == 0:
				// Its worker was killed mid-call: lost, but never billed above it.
				lostInFault++
				lostValue += value(max(last.PromptTokens, 0), max(last.CompletionTokens, 0))
				lost = true
				wantP, wantC = l.prompt, l.completion
			case last.Cut:
				cutStreams++
				wantP = last.PromptTokens
				exact = false
				loC, hiC = int64(r.seen), last.CompletionTokens
				if hiC < 0 { // a non-stream answer cut: any completion count up to the hold
					hiC = 1 << 40
				}
				if l.prompt != wantP {
					cutPromptUnpaid++
				}
				if l.completion > hiC || l.completion < loC {
					cutCompletionOff++
				}
			}
			st.engineP += max(wantP, 0)
			if exact {
				st.engineC += wantC
			} else if last.CompletionTokens >= 0 {
				st.engineC += last.CompletionTokens
			}
		}
		ok := l.prompt == wantP
		if lost {
			hi := int64(1 << 40)
			if len(at) > 0 && at[len(at)-1].CompletionTokens >= 0 {
				hi = value(max(at[len(at)-1].PromptTokens, 0), at[len(at)-1].CompletionTokens)
			}
			ok = l.charged() <= hi && l.charged() == value(l.prompt, l.completion)
		} else if exact {
			ok = ok && l.completion == wantC
		} else {
			ok = ok && l.completion >= loC && l.completion <= hiC
			wantC = min(max(l.completion, loC), hiC)
		}
		ok = ok && l.charged() == value(l.prompt, l.completion)
		if !ok {
			st.jobsDiffer++
			differTags[r.tag] = true
			gap := value(max(wantP, 0), wantC) - l.charged()
			if gap > 0 {
				st.unbilled += gap
				unbilledTotal += gap
			} else {
				overbilled += -gap
			}
			want := fmt.Sprintf("%d+%d", wantP, wantC)
			if !exact && hiC == 1<<40 {
				want = fmt.Sprintf("%d+[%d..?] (answer cut)", wantP, loC)
			} else if !exact {
				want = fmt.Sprintf("%d+[%d..%d]", wantP, loC, hiC)
			}
			differ = append(differ, fmt.Sprintf("%s %s job %s: engine %s tokens over %d attempt(s), ledger %d+%d charged %d µ$ for %d µ$ of usage",
				r.kind, r.tag, r.jobID, want, len(at), l.prompt, l.completion, l.charged(), value(max(wantP, 0), wantC)))
		}
		if r.kind == kindPoison {
			poisonLine, poisonOK = m.poisonVerdict(ctx, r, at, l)
		}
	}
	var chk moneyCheck
	jobs := 0
	for _, r := range reqs {
		if r.jobID != "" {
			jobs++
		}
	}
	chk.add("per job: ledger charge = engine usage priced", len(differ) == 0, "%d of %d requests differ (%d admitted jobs)", len(differTags), len(reqs), jobs)
	chk.add("unbilled engine usage", unbilledTotal == 0, "%d µ$ at list price", unbilledTotal)
	chk.add("billed beyond the engine's usage", overbilled == 0, "%d µ$ at list price", overbilled)
	chk.add("jobs billed twice", twice == 0, "%d", twice)
	chk.add("refused requests that reached an engine", refusedReached == 0, "%d (a refused request costs 0 and runs nowhere)", refusedReached)
	chk.add("cut streams/answers pay the prompt processed", cutPromptUnpaid == 0, "%d of %d cut attempts billed another prompt count", cutPromptUnpaid, cutStreams)
	chk.add("cut streams pay the completion tokens sent", cutCompletionOff == 0,
		"%d of %d billed outside [tokens the client read, content tokens the engine sent]", cutCompletionOff, cutStreams)
	chk.add("poison job: fails, bounded, pays its prompt", poisonOK, "%s", poisonLine)
	chk.add("earlier attempts unbilled outside a fault", unbilledRetry == 0, "%d (engine work of a retry that was not a killed process's)", unbilledRetry)
	chk.add("engine attempts cut outside a fault", cutByOthers == 0, "%d (not by a kill, nor by their own client) %s", cutByOthers, strings.Join(cutExamples, ", "))
	chk.info("requests answered with an error whose job ran", "%d %s", erroredRan, strings.Join(erroredEx, "; "))
	chk.info("attempts cut by a fault", "%d, %d µ$ of engine work (a retried attempt cut by a fault, or a last one whose worker was killed) not billed", lostInFault, lostValue)
	excess, where := m.excessMetric(ctx)
	if where == "" {
		chk.info("sluice_settlement_excess_tokens_total", "absent (not exported by this build)")
	} else {
		chk.add("sluice_settlement_excess_tokens_total", excess == 0, "%d (%s)", excess, where)
	}
	neg := m.negativeBalances(ctx, conn)
	chk.add("balances below zero", len(neg) == 0, "%d %s", len(neg), strings.Join(neg, ", "))
	tags, untagged := m.px.Counts()
	chk.info("engine proxy", "%d tags reached the engine; %d untagged generation requests (rate-limit/balance checks, orphan lapse)", tags, untagged)

	fmt.Fprintln(w, "")
	fmt.Fprintln(w, "hostile requests and per-job money (engine usage read by the drill's proxy between the workers and the simulator):")
	fmt.Fprintln(w, "")
	fmt.Fprintf(w, "  %-13s %5s %6s %7s %7s %4s %8s %15s %15s %10s %6s\n", "kind", "sent", "admit", "400", "429", "err", "attempts",
		"engine P+C", "billed P+C", "unbilled", "differ")
	for _, k := range kinds {
		s := stats[k]
		if s.sent == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-13s %5d %6d %7d %7d %4d %8d %15s %15s %8dµ$ %6d\n", k, s.sent, s.admitted, s.refused400, s.refused429, s.errs, s.attempts,
			fmt.Sprintf("%d+%d", s.engineP, s.engineC), fmt.Sprintf("%d+%d", s.billedP, s.billedC), s.unbilled, s.jobsDiffer)
	}
	for _, k := range kinds {
		if len(stats[k].refusals) > 0 {
			fmt.Fprintf(w, "  refusals of %-13s %v\n", k+":", stats[k].refusals)
		}
	}
	fmt.Fprintln(w, "")
	fmt.Fprintf(w, "  %-50s %-6s %s\n", "check", "result", "detail")
	for _, r := range chk.rows {
		fmt.Fprintf(w, "  %-50s %-6s %s\n", r[0], r[1], r[2])
	}
	if len(differ) > 0 {
		sort.Strings(differ)
		fmt.Fprintln(w, "")
		fmt.Fprintf(w, "  jobs whose charge differs from the engine's usage (%d; first 25):\n", len(differ))
		for i, d := range differ {
			if i == 25 {
				break
			}
			fmt.Fprintln(w, "   ", d)
		}
	}
	return chk.failures
}

// l0 is l, or an empty row.
func l0(l *ledgerRow) *ledgerRow {
	if l == nil {
		return &ledgerRow{}
	}
	return l
}

// inWindow reports whether t falls in a fault's window (only a killed
// worker's, with reporterDies).
func (m *money) inWindow(t time.Time, reporterDies bool) bool {
	m.winMu.Lock()
	defer m.winMu.Unlock()
	for _, w := range m.windows {
		if (w.reporterDies || !reporterDies) && !t.Before(w.from) && !t.After(w.to) {
			return true
		}
	}
	return false
}

// fault records a fault's window: engine attempts cut from `from` until
// `to` are the fault's.
func (m *money) fault(what string, from, to time.Time, reporterDies bool) {
	m.winMu.Lock()
	m.windows = append(m.windows, window{what, from, to, reporterDies})
	m.winMu.Unlock()
}

// poisonVerdict checks the poison job: it failed with a clear error within
// a bounded time, the engine got it at most jobs.max_attempts (3) times,
// it paid its prompt and nothing else, and no endpoint was taken out.
func (m *money) poisonVerdict(ctx context.Context, r *tracked, at []engineAttempt, l *ledgerRow) (string, bool) {
	h, err := m.rdb.HMGet(ctx, rkey.JobKey(r.jobID), "status", "error", "created", "ended").Result()
	if err != nil {
		return "job record: " + err.Error(), false
	}
	str := func(i int) string { s, _ := h[i].(string); return s }
	var eb sluice.ErrorBody
	json.Unmarshal([]byte(str(1)), &eb) //nolint:errcheck
	created, _ := strconv.ParseInt(str(2), 10, 64)
	ended, _ := strconv.ParseInt(str(3), 10, 64)
	took := time.Duration(ended-created) * time.Millisecond
	out := 0
	for _, wk := range []string{"w1", "w2"} {
		out += len(m.logLines(wk, "endpoint taken out of rotation"))
	}
	prompt := int64(-1)
	if len(at) > 0 {
		prompt = at[len(at)-1].PromptTokens
	}
	line := fmt.Sprintf("status %s, error %q, ended after %s, engine got it %d×, billed %d+%d (its prompt: %d), endpoint taken out %d×",
		str(0), eb.Code, took.Round(time.Millisecond), len(at), l.prompt, l.completion, prompt, out)
	ok := str(0) == string(sluice.JobFailed) && ended > 0 && took <= time.Minute && len(at) >= 1 && len(at) <= 3 &&
		l.prompt > 0 && l.completion == 0 && out == 0
	return line, ok
}

// excessMetric sums sluice_settlement_excess_tokens_total over the
// /metrics pages of the processes alive (submit1 and worker w2); where is
// "" when no page has the metric.
func (m *money) excessMetric(ctx context.Context) (total int64, where string) {
	var found []string
	for name, url := range m.metricsURLs {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := m.hc.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "sluice_settlement_excess_tokens_total") {
				continue
			}
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				total += int64(v)
				found = append(found, name)
			}
		}
	}
	if len(found) == 0 {
		return 0, ""
	}
	sort.Strings(found)
	return total, "summed over " + strings.Join(slices.Compact(found), ", ")
}

// negativeBalances lists users whose live or ledger credit is below zero.
func (m *money) negativeBalances(ctx context.Context, conn *pgx.Conn) []string {
	var out []string
	for _, u := range append(append([]*drillUser(nil), m.users...), m.syncUser) {
		l, err := admission.LiveCounters(ctx, m.rdb, u.id)
		if err != nil {
			out = append(out, u.email+": "+err.Error())
			continue
		}
		var credit int64
		if err := conn.QueryRow(ctx, `SELECT COALESCE(SUM(credit_micros),0)::bigint FROM credit_ledger WHERE user_id = $1`, u.id).Scan(&credit); err != nil {
			out = append(out, u.email+": "+err.Error())
			continue
		}
		if l.Credit < 0 || credit < 0 {
			out = append(out, fmt.Sprintf("%s: live %d µ$, ledger %d µ$", u.email, l.Credit, credit))
		}
	}
	return out
}
