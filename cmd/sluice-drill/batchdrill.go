package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/scratch"
)

// runBatchDrill is `sluice-drill batch`: a batch runs on two workers (each
// with its batch driver) behind one submit instance; mid-batch the worker
// whose driver holds the batch is killed with SIGKILL, and so is the
// submit instance (then restarted). The batch must complete with every
// line once in its output and one ledger row per line.
func runBatchDrill(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice-drill batch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	lines := fs.Int("lines", 400, "lines in the batch")
	killAt := fs.Int("kill-at", 60, "kill once this many lines are done")
	fs.IntVar(&o.maxTokens, "max-tokens", 20, "max_tokens of each line (about 20 ms each)")
	fs.IntVar(&o.redisDB, "redis-db", 10, "Redis database index used (flushed before and after)")
	fs.StringVar(&o.sim, "sim", os.Getenv("SLUICE_SIM"), "simulator binary (default $SLUICE_SIM or bin/vllm-sim)")
	fs.DurationVar(&o.timeout, "timeout", 6*time.Minute, "bound on the whole drill")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder even when the drill passes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *lines < 1 || *killAt < 1 || *killAt >= *lines {
		fmt.Fprintln(stderr, "sluice-drill batch: need -lines > -kill-at > 0")
		return 2
	}
	o.mode = "batch"
	d := &drill{o: o, out: stdout, errw: stderr}
	return verdict(ctx, o.timeout, func(ctx context.Context) error { return d.batchRun(ctx, *lines, *killAt) }, "sluice-drill batch", stdout, stderr)
}

func (d *drill) batchRun(ctx context.Context, lines, killAt int) (err error) {
	cleanup, err := d.setup(ctx, "sluice-drill-batch")
	if err != nil {
		return err
	}
	defer func() { cleanup(err != nil || d.o.keep) }()
	redisURL, err := scratch.RedisDBURL(scratch.FirstEnv("redis://127.0.0.1:6379", "TEST_REDIS_URL"), d.o.redisDB)
	if err != nil {
		return err
	}
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	d.rdb = redis.NewClient(opt)
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.rdb.FlushDB(fctx)
		d.rdb.Close()
	}()
	if err := d.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	sims, err := d.startSims(ctx)
	if err != nil {
		return err
	}
	defer d.stopAll()
	cfgPath := filepath.Join(d.dir, "sluice.yaml")
	yml := fmt.Sprintf(`inference:
  models:
    - name: %s
      max_batch_size: 8
      max_model_len: 2048
      endpoints: [%s]
pricing:
  %s: {input_tokens: 0.000001, output_tokens: 0.000002}
worker:
  claim_idle: 3s
  heartbeat: 1s
  listen: "off"
batch:
  files_dir: %s
  driver_lease: 3s
  lines_in_flight: 16
`, model, strings.Join(simURLs(sims), ", "), model, filepath.Join(d.dir, "files")) + scratch.Unthrottled(false)
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		return err
	}
	port, err := devstack.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	d.base = "http://" + addr
	d.env = append(cleanEnv(), "DATABASE_URL="+d.dbURL, "REDIS_URL="+redisURL, "SLUICE_KEY_PEPPER="+scratch.RandHex(32),
		"SLUICE_WEBHOOK_SECRET="+scratch.RandHex(32), "SLUICE_ADDR="+addr, "SLUICE_CONFIG="+cfgPath)
	d.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	fn, err := d.startFunctions(ctx)
	if err != nil {
		return err
	}
	ws := map[string]*proc{}
	for _, n := range []string{"w1", "w2"} {
		if ws[n], err = d.start(n, filepath.Join(d.dir, "gpuworker"), []string{"SLUICE_WORKER_NAME=" + n}); err != nil {
			return err
		}
	}

	// The batch.
	var in bytes.Buffer
	for i := range lines {
		fmt.Fprintf(&in, `{"custom_id":"drill-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"drill line %d"}],"max_tokens":%d,"ignore_eos":true}}`+"\n",
			i, model, i, d.o.maxTokens)
	}
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("purpose", "batch") //nolint:errcheck
	fw, _ := mw.CreateFormFile("file", "drill.jsonl")
	fw.Write(in.Bytes()) //nolint:errcheck
	mw.Close()
	req, _ := http.NewRequestWithContext(ctx, "POST", d.base+"/v1/files", &mp)
	req.Header.Set("Authorization", "Bearer "+d.key)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	var file struct{ ID string }
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || json.Unmarshal(b, &file) != nil {
		return fmt.Errorf("upload: %d %s", resp.StatusCode, b)
	}
	type batchState struct {
		ID, Status    string
		OutputFileID  string                                 `json:"output_file_id"`
		ErrorFileID   string                                 `json:"error_file_id"`
		RequestCounts struct{ Total, Completed, Failed int } `json:"request_counts"`
	}
	var bs batchState
	if _, err := d.call(ctx, "POST", "/v1/batches", []byte(fmt.Sprintf(`{"input_file_id":%q,"endpoint":"/v1/chat/completions","completion_window":"24h"}`, file.ID)), &bs); err != nil {
		return err
	}
	started := time.Now()
	d.logf("batch %s of %d lines created", bs.ID, lines)

	// The faults: once killAt lines are done, SIGKILL the worker whose
	// driver holds the batch, and the submit instance (restarted after 1s).
	conn, err := pgx.Connect(ctx, d.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var owner string
	for {
		var done int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM batch_results WHERE batch_id = $1`, bs.ID).Scan(&done); err != nil {
			return err
		}
		if done >= killAt {
			if err := conn.QueryRow(ctx, `SELECT COALESCE(lease_owner, '') FROM batches WHERE id = $1`, bs.ID).Scan(&owner); err != nil {
				return err
			}
			d.logf("%d lines done; the batch is held by %q", done, owner)
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	victim := ws[strings.SplitN(owner, "/", 2)[0]]
	if victim == nil {
		return fmt.Errorf("no worker holds the batch (lease owner %q)", owner)
	}
	if err := syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	<-victim.done
	killedAt := time.Now()
	d.logf("killed %s (SIGKILL), the batch's driver", victim.name)
	if err := syscall.Kill(fn.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	<-fn.done
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	if fn, err = d.start("sluice-again", fn.cmd.Path, nil, fn.cmd.Args[1:]...); err != nil {
		return err
	}
	if err := d.waitReady(ctx, fn); err != nil {
		return err
	}
	d.logf("submit instance killed (SIGKILL) and restarted")

	// The batch must complete on the surviving worker.
	for bs.Status != "completed" {
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("batch still %s (%+v): %w", bs.Status, bs.RequestCounts, err)
		}
		if _, err := d.call(ctx, "GET", "/v1/batches/"+bs.ID, nil, &bs); err != nil {
			d.logf("get batch: %v", err)
			continue
		}
		if bs.Status == "failed" || bs.Status == "cancelled" || bs.Status == "expired" {
			return fmt.Errorf("batch ended %s", bs.Status)
		}
	}
	took := time.Since(started)
	req, _ = http.NewRequestWithContext(ctx, "GET", d.base+"/v1/files/"+bs.OutputFileID+"/content", nil)
	req.Header.Set("Authorization", "Bearer "+d.key)
	resp, err = d.hc.Do(req)
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	seen := map[string]int{}
	var jobs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int    `json:"status_code"`
				RequestID  string `json:"request_id"`
			} `json:"response"`
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Response.StatusCode == 200 {
			seen[l.CustomID]++
			jobs = append(jobs, l.Response.RequestID)
		}
	}
	if err := sleep(ctx, 3*time.Second); err != nil { // the last settlements
		return err
	}
	var rows, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT job_id) FROM credit_ledger WHERE kind = 'usage' AND job_id = ANY($1)`, jobs).Scan(&rows, &distinct); err != nil {
		return err
	}
	var usage int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM inference_requests WHERE job_id = ANY($1)`, jobs).Scan(&usage); err != nil {
		return err
	}
	dup := 0
	for _, n := range seen {
		if n > 1 {
			dup++
		}
	}
	fmt.Fprintf(d.out, "batch drill: %d lines; SIGKILL of %s (the batch's driver) and of the submit instance after %d lines\n", lines, victim.name, killAt)
	fmt.Fprintf(d.out, "  completed in %s (%s after the kills); output %d lines, %d distinct custom_ids, %d duplicated; error file %q\n",
		took.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond), len(jobs), len(seen), dup, bs.ErrorFileID)
	fmt.Fprintf(d.out, "  ledger: %d usage rows (%d distinct jobs) for the output's %d lines; %d usage records\n", rows, distinct, len(jobs), usage)
	if len(jobs) != lines || len(seen) != lines || dup != 0 || bs.ErrorFileID != "" {
		return fmt.Errorf("output: %d lines, %d custom ids, %d duplicated, error file %q; want %d each once", len(jobs), len(seen), dup, bs.ErrorFileID, lines)
	}
	if rows != lines || distinct != lines || usage != lines {
		return fmt.Errorf("billed: %d ledger rows, %d usage records for %d lines", rows, usage, lines)
	}
	return nil
}
