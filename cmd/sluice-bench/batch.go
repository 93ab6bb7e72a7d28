package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/internal/devstack"
)

// batchBench (-mode batch) runs a -lines batch on the simulator and
// measures interactive latency (p50 of -n requests from -c clients)
// without it and while it runs, in one run on one stack; then checks the
// output (every custom_id once) and the ledger (one row per line).
func batchBench(ctx context.Context, o options, lines int, stderr io.Writer) (string, error) {
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "sluice-bench: "+format+"\n", a...) }
	run, err := newScratchRun(ctx, o, "sluice-bench-batch-", progress)
	if err != nil {
		return "", err
	}
	defer run.close()
	bin, err := devstack.SimBinary(o.sim)
	if err != nil {
		return "", err
	}
	ttft, itl := 20*time.Millisecond, 2*time.Millisecond
	sim, err := devstack.StartSim(ctx, bin, model, 2048, o.maxNumSeqs, filepath.Join(run.dir, "sim.log"),
		"--time-to-first-token", ttft.String(), "--inter-token-latency", itl.String())
	if err != nil {
		return "", err
	}
	defer sim.Stop()
	yml := fmt.Sprintf("inference:\n  models:\n    - name: %s\n      max_batch_size: %d\n      max_model_len: 2048\n      endpoints: [%s]\n"+
		"pricing:\n  %s: {input_tokens: 0.000001, output_tokens: 0.000002}\n"+
		"batch: {lines_per_minute: 1000000, lines_in_flight: %d, max_lines: %d, max_file_bytes: 209715200}\n",
		model, o.maxNumSeqs, sim.URL, model, max(o.maxNumSeqs*4, 64), max(lines, 50000)) +
		// The operator (enterprise) pays in money, postpaid, so the ledger
		// shows the batch discount; no other limit applies.
		"tiers:\n  enterprise: {rate_limit: unlimited, included_credits: 0, tokens_per_minute: unlimited, concurrency: unlimited, overage: postpaid, overage_cap: 1000000}\n" +
		"admission:\n  custom: {requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, concurrency: 1000000}\n"
	st, stop, err := startStack(ctx, filepath.Join(run.dir, "stack"), yml, run.dbURL, run.redisURL, progress)
	if err != nil {
		return "", err
	}
	defer stop()
	base := "http://" + st.Addr
	cl := &http.Client{Timeout: 2 * time.Minute}
	call := func(method, path, ctype string, body io.Reader) ([]byte, int, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, body)
		req.Header.Set("Authorization", "Bearer "+st.AdminKey)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, err
	}
	chat := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"interactive"}],"max_tokens":%d}`, model, o.maxTokens)
	interactive := func(n int) ([]time.Duration, int, error) {
		var mu sync.Mutex
		var lat []time.Duration
		var failed int
		var wg sync.WaitGroup
		next := make(chan struct{}, n)
		for range n {
			next <- struct{}{}
		}
		close(next)
		for range o.concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					t0 := time.Now()
					_, code, err := call("POST", "/v1/chat/completions", "application/json", strings.NewReader(chat))
					d := time.Since(t0)
					mu.Lock()
					if err != nil || code != 200 {
						failed++
					} else {
						lat = append(lat, d)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, failed, ctx.Err()
	}
	progress("warm-up: %d interactive requests", o.warmup)
	if _, _, err := interactive(o.warmup); err != nil {
		return "", err
	}
	progress("baseline: %d interactive requests, %d at a time", o.requests, o.concurrency)
	base0, fail0, err := interactive(o.requests)
	if err != nil {
		return "", err
	}
	// The batch file.
	var in bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&in, `{"custom_id":"line-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"batch line %d"}],"max_tokens":%d}}`+"\n",
			i, model, i, o.maxTokens)
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("purpose", "batch") //nolint:errcheck
	fw, _ := mw.CreateFormFile("file", "bench.jsonl")
	fw.Write(in.Bytes()) //nolint:errcheck
	mw.Close()
	b, code, err := call("POST", "/v1/files", mw.FormDataContentType(), &mp)
	if err != nil || code != 200 {
		return "", fmt.Errorf("upload: %d %s %v", code, b, err)
	}
	var file struct{ ID string }
	json.Unmarshal(b, &file) //nolint:errcheck
	b, code, err = call("POST", "/v1/batches", "application/json",
		strings.NewReader(fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, file.ID)))
	if err != nil || code != 200 {
		return "", fmt.Errorf("create batch: %d %s %v", code, b, err)
	}
	type batchState struct {
		ID, Status    string
		OutputFileID  string                                 `json:"output_file_id"`
		ErrorFileID   string                                 `json:"error_file_id"`
		RequestCounts struct{ Total, Completed, Failed int } `json:"request_counts"`
	}
	var bs batchState
	json.Unmarshal(b, &bs) //nolint:errcheck
	get := func() (batchState, error) {
		var s batchState
		b, code, err := call("GET", "/v1/batches/"+bs.ID, "", nil)
		if err != nil || code != 200 {
			return s, fmt.Errorf("get batch: %d %s %v", code, b, err)
		}
		return s, json.Unmarshal(b, &s)
	}
	started := time.Now()
	for {
		s, err := get()
		if err != nil {
			return "", err
		}
		if s.Status == "in_progress" && s.RequestCounts.Completed > 0 {
			break
		}
		if s.Status != "validating" && s.Status != "in_progress" {
			return "", fmt.Errorf("batch %s before it ran", s.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	progress("during the batch: %d interactive requests", o.requests)
	during, fail1, err := interactive(o.requests)
	if err != nil {
		return "", err
	}
	mid, _ := get()
	for bs.Status != "completed" {
		if bs, err = get(); err != nil {
			return "", err
		}
		if bs.Status == "failed" || bs.Status == "cancelled" || bs.Status == "expired" {
			return "", fmt.Errorf("batch %s", bs.Status)
		}
		sluiceSleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	took := time.Since(started)
	out, code, err := call("GET", "/v1/files/"+bs.OutputFileID+"/content", "", nil)
	if err != nil || code != 200 {
		return "", fmt.Errorf("output: %d %v", code, err)
	}
	seen := map[string]int{}
	nOut := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int `json:"status_code"`
			} `json:"response"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Response.StatusCode == 200 {
			seen[l.CustomID]++
			nOut++
		}
	}
	time.Sleep(2 * time.Second) // the last lines' settlement
	conn, err := pgx.Connect(ctx, run.dbURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var rows, batchRows int64
	var batchPrompt, batchCompletion int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM credit_ledger WHERE kind = 'usage'`).Scan(&rows); err != nil {
		return "", err
	}
	// A batch line's job id is derived from the batch id; the interactive
	// ones are random: the batch's rows are those of its output lines' jobs.
	var jobIDs []string
	sc = bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Response struct {
				RequestID string `json:"request_id"`
			} `json:"response"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			jobIDs = append(jobIDs, l.Response.RequestID)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT count(*), COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0)
		FROM credit_ledger WHERE kind = 'usage' AND job_id = ANY($1)`, jobIDs).Scan(&batchRows, &batchPrompt, &batchCompletion); err != nil {
		return "", err
	}
	// What the batch's lines were charged (money: credit and overage; plus
	// the included tokens a plan spends one for one) against the list price
	// at pricing.<model>.batch_discount (default 0.5), line by line, as the
	// settler rounds: ceil(list × factor).
	var tierRows, charged, discounted, list, included int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE service_tier = 'batch'),
		COALESCE(sum(-credit_micros + overage_micros), 0),
		COALESCE(sum(ceil((prompt_tokens * 1 + completion_tokens * 2) / 2.0)), 0)::bigint,
		COALESCE(sum(prompt_tokens * 1 + completion_tokens * 2), 0), COALESCE(sum(included_tokens), 0)
		FROM credit_ledger WHERE kind = 'usage' AND job_id = ANY($1)`, jobIDs).Scan(&tierRows, &charged, &discounted, &list, &included); err != nil {
		return "", err
	}
	dup := 0
	for _, n := range seen {
		if n > 1 {
			dup++
		}
	}
	p0, p1 := pct(base0), pct(during)
	var r strings.Builder
	fmt.Fprintf(&r, "## Batch: %d lines on the simulator (one engine, %d seqs, ttft %s, itl %s)\n\n", lines, o.maxNumSeqs, ttft, itl)
	fmt.Fprintf(&r, "| | interactive p50 | p90 | p99 | requests | failed |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&r, "| without the batch | %.1f ms | %.1f ms | %.1f ms | %d | %d |\n", ms(p0.p50), ms(p0.p90), ms(p0.p99), len(base0), fail0)
	fmt.Fprintf(&r, "| while it runs | %.1f ms | %.1f ms | %.1f ms | %d | %d |\n\n", ms(p1.p50), ms(p1.p90), ms(p1.p99), len(during), fail1)
	fmt.Fprintf(&r, "- p50 while the batch runs: %+.1f %% of without it (%d of %d lines done when the interactive phase ended)\n",
		100*(ms(p1.p50)-ms(p0.p50))/ms(p0.p50), mid.RequestCounts.Completed, lines)
	fmt.Fprintf(&r, "- batch completed in %s (%.0f lines/s); output %d lines, %d distinct custom_ids, %d duplicated; error file %q\n",
		took.Round(time.Millisecond), float64(lines)/took.Seconds(), nOut, len(seen), dup, bs.ErrorFileID)
	fmt.Fprintf(&r, "- ledger: %d usage rows for the batch's %d output lines (%d prompt, %d completion tokens); %d usage rows in all\n",
		batchRows, nOut, batchPrompt, batchCompletion, rows)
	fmt.Fprintf(&r, "- price: %d rows at service_tier batch; charged %d µ$ (+ %d included tokens) for a list price of %d µ$; at the 50 %% discount, line by line: %d µ$\n",
		tierRows, charged, included, list, discounted)
	var errs []string
	if nOut != lines || len(seen) != lines || dup != 0 {
		errs = append(errs, fmt.Sprintf("output has %d lines, %d custom ids, want %d each once", nOut, len(seen), lines))
	}
	if batchRows != int64(nOut) {
		errs = append(errs, fmt.Sprintf("ledger has %d rows for %d output lines", batchRows, nOut))
	}
	if len(errs) > 0 {
		return r.String(), fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return r.String(), nil
}

func sluiceSleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
