// Package driver runs batches: it claims a batch in PostgreSQL (a lease one
// driver holds at a time), validates its input file, admits each line
// (funds held like any request, the batch's own line limits in Redis) and
// enqueues it on its model's queue as batch-class work, collects each
// line's outcome once, and writes the output and error files at the end.
// It runs in the GPU worker process (and `sluice dev`), never in a
// stateless function; all its progress is in PostgreSQL and Redis, so any
// instance resumes a batch whose driver died. See docs/BATCH.md.
package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Driver works batches until its context ends.
type Driver struct {
	Config *config.Config
	Log    *slog.Logger
	Store  batch.Store
	Blobs  batch.Blobs
	Queue  *redisq.Queue
	// Admission holds each line's funds; nil admits everything (as submit
	// without admission).
	Admission *admission.Admitter
	// Objects reads line results too large for Redis; nil: none are.
	Objects *objstore.Jobs
	// Name is this driver's lease owner name: unique per process.
	Name string
	// Poll is how often a working batch looks at its lines and how often an
	// idle driver looks for a batch; default 200ms.
	Poll time.Duration
}

// Run claims and works batches, at most batch.driver_batches at once,
// until ctx ends.
func (d *Driver) Run(ctx context.Context) error {
	if d.Poll <= 0 {
		d.Poll = 200 * time.Millisecond
	}
	sem := make(chan struct{}, d.Config.Batch.DriverBatches)
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		id, ok, err := d.Store.ClaimBatch(ctx, d.Name, d.Config.Batch.DriverLease)
		if err != nil || !ok {
			<-sem
			if err != nil && ctx.Err() == nil {
				d.Log.WarnContext(ctx, "batch claim failed", slog.String("err", err.Error()))
			}
			if sluice.Sleep(ctx, max(d.Poll, 500*time.Millisecond)); ctx.Err() != nil {
				return nil
			}
			continue
		}
		go func() {
			defer func() { <-sem }()
			d.work(ctx, id)
		}()
	}
}

// item is one line, checked.
type item struct {
	batch.Line
	req *openai.Request
}

type run struct {
	d      *Driver
	b      batch.Batch
	items  []item
	status atomic.Value // the batch's status as the lease renewal last read it
	// quotaSince: when a line was first refused for funds with nothing of
	// the batch in flight (settlement of the last lines may lag a moment).
	quotaSince time.Time
}

// work drives one claimed batch until it ends, the lease is lost, or ctx ends.
func (d *Driver) work(ctx context.Context, id string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := d.Store.GetBatch(ctx, id, "")
	if err != nil {
		d.Log.WarnContext(ctx, "batch read failed", slog.String("batch_id", id), slog.String("err", err.Error()))
		d.Store.ReleaseBatch(context.WithoutCancel(ctx), id, d.Name) //nolint:errcheck // it lapses
		return
	}
	r := &run{d: d, b: b}
	r.status.Store(b.Status)
	renewed := make(chan struct{})
	go func() { // the lease, and the status a cancel sets
		defer close(renewed)
		every := min(d.Config.Batch.DriverLease/3, time.Second)
		for sluice.Sleep(ctx, every); ctx.Err() == nil; sluice.Sleep(ctx, every) {
			st, err := d.Store.RenewBatch(ctx, id, d.Name, d.Config.Batch.DriverLease)
			if errors.Is(err, batch.ErrLost) {
				d.Log.WarnContext(ctx, "batch lease lost", slog.String("batch_id", id))
				cancel()
				return
			}
			if err == nil {
				r.status.Store(st)
			}
		}
	}()
	if err := r.drive(ctx); err != nil && ctx.Err() == nil {
		d.Log.WarnContext(ctx, "batch driver stopped; another run resumes it", slog.String("batch_id", id), slog.String("err", err.Error()))
	}
	cancel()
	<-renewed
	d.Store.ReleaseBatch(context.WithoutCancel(ctx), id, d.Name) //nolint:errcheck // it lapses
}

func (r *run) drive(ctx context.Context) error {
	d, b := r.d, &r.b
	switch b.Status {
	case batch.StatusValidating, batch.StatusInProgress, batch.StatusFinalizing, batch.StatusCancelling:
	default:
		return nil
	}
	if err := r.load(ctx); err != nil {
		var fe *batch.FileError
		if !errors.As(err, &fe) {
			return err
		}
		if b.Status == batch.StatusValidating {
			return d.Store.StartBatch(ctx, b.ID, d.Name, batch.StatusFailed, 0, []batch.LineError{fe.LineError})
		}
		// The input went away mid-batch (deleted): what has not run cannot.
		return r.stop(ctx, fe.Code, fe.Message, batch.StatusFailed)
	}
	if b.Status == batch.StatusValidating {
		var bad []batch.Result
		for _, it := range r.items {
			if it.Err != nil {
				bad = append(bad, batch.ErrorLine(b.ID, it.Line, it.Err.Code, it.Err.Message))
			}
		}
		if err := d.Store.AddBatchResults(ctx, b.ID, bad); err != nil {
			return err
		}
		if err := d.Store.StartBatch(ctx, b.ID, d.Name, batch.StatusInProgress, len(r.items), nil); err != nil {
			return err
		}
		b.Status, b.Total = batch.StatusInProgress, len(r.items)
		r.status.Store(b.Status)
	}
	return r.lines(ctx)
}

// load reads and checks the input file's lines.
func (r *run) load(ctx context.Context) error {
	d, b := r.d, &r.b
	f, err := d.Store.GetFile(ctx, b.InputFileID, b.UserID)
	if sluice.AsError(err).Kind == sluice.KindNotFound {
		return &batch.FileError{LineError: batch.LineError{Code: batch.CodeFileMissing, Message: "The input file was deleted."}}
	}
	if err != nil {
		return err
	}
	if f.Purpose != batch.PurposeBatch {
		return &batch.FileError{LineError: batch.LineError{Code: batch.CodeInvalidPurpose,
			Message: fmt.Sprintf("The input file's purpose is %q; a batch needs one uploaded with purpose \"batch\".", f.Purpose)}}
	}
	rc, err := d.Blobs.Get(ctx, f.StorageKey)
	if sluice.AsError(err).Kind == sluice.KindNotFound {
		return &batch.FileError{LineError: batch.LineError{Code: batch.CodeFileMissing, Message: "The input file's content is gone."}}
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	lines, err := batch.ReadLines(rc, b.Endpoint, d.Config.Batch.MaxLines)
	if err != nil {
		return err
	}
	r.items = make([]item, len(lines))
	for i, l := range lines {
		r.items[i] = r.check(l)
	}
	return nil
}

// check validates a line's request as the live route would: the same
// parser (strict allowlist, bounds), the key's model allowlist and the
// tier's input limits.
func (r *run) check(l batch.Line) item {
	it := item{Line: l}
	if l.Err != nil {
		return it
	}
	d, o := r.d, r.b.Owner
	fail := func(err error) item {
		e := sluice.AsError(err)
		code := e.Code
		if code == "" {
			code = batch.CodeInvalidRequest
		}
		le := &batch.LineError{Code: code, Message: e.Message}
		if e.Param != "" {
			p := "body." + e.Param
			le.Param = &p
		}
		n := l.Physical
		le.Line = &n
		it.Err = le
		return it
	}
	req, err := parseLine(r.b.Endpoint, l.Body, d.Config.ForUser(o.UserID),
		openai.Limits{MaxMessages: d.Config.Server.MaxMessages, BytesPerTokenFloor: d.Config.Server.BytesPerTokenFloor})
	if err != nil {
		return fail(err)
	}
	if req.Stream {
		return fail(sluice.Invalid("stream", sluice.CodeInvalidValue, "A batch line cannot stream."))
	}
	public := req.Model.Name
	if req.Requested != "" {
		public = req.Requested
	}
	if err := authn.AllowModel(o.Principal(), public); err != nil {
		return fail(err)
	}
	if d.Admission != nil {
		if err := d.Admission.CheckInput(o.Tier, req.MaxTokens); err != nil {
			return fail(err)
		}
	}
	it.req = req
	return it
}

func (r *run) jobID(it *item) string {
	return rkey.BatchLineJobID(it.req.Model.Name, r.b.UserID, r.d.Config.Jobs.Shards, r.b.ID, it.N)
}

// lines starts lines and collects their outcomes until every line has one.
func (r *run) lines(ctx context.Context) error {
	d, b := r.d, &r.b
	doneList, err := d.Store.BatchResultLines(ctx, b.ID)
	if err != nil {
		return err
	}
	done := make(map[int]bool, len(doneList))
	for _, n := range doneList {
		done[n] = true
	}
	inflight := map[int]string{}
	next := min(b.NextLine, len(r.items))
	var freed []string
	for i := range next { // admitted and enqueued by an earlier run
		switch {
		case r.items[i].req == nil:
		case !done[i]:
			inflight[i] = r.jobID(&r.items[i])
		default: // a run that died between recording a line and freeing its slot
			freed = append(freed, r.jobID(&r.items[i]))
		}
	}
	for chunk := range slices.Chunk(freed, 1000) {
		if err := redisq.BatchSlotFree(ctx, d.Queue.Client(), b.UserID, chunk...); err != nil {
			return err
		}
	}
	cancelled := false
	for {
		st, _ := r.status.Load().(string)
		expired := time.Now().After(b.ExpiresAt)
		stopping := st == batch.StatusCancelling || expired
		if stopping && !cancelled {
			for _, id := range inflight {
				if _, err := d.Queue.Cancel(ctx, id, ""); err != nil && !errors.Is(err, sluice.ErrNotFound) {
					return err
				}
			}
			cancelled = true
		}
		if err := r.collect(ctx, inflight, done, stopping); err != nil {
			return err
		}
		if !stopping {
			n, refused, err := r.start(ctx, next, inflight, done)
			if aerr := d.Store.AddBatchResults(ctx, b.ID, refused); aerr != nil {
				return aerr // the cursor stays: these lines are refused again
			}
			if err != nil {
				return err
			}
			if n != next {
				if err := d.Store.AdvanceBatch(ctx, b.ID, d.Name, n); err != nil {
					return err
				}
				next = n
			}
		}
		if len(inflight) == 0 {
			switch {
			case expired:
				return r.stop(ctx, batch.CodeBatchExpired, "The batch's 24h window ended before this line ran.", batch.StatusExpired)
			case stopping:
				return r.stop(ctx, batch.CodeBatchCancelled, "The batch was cancelled before this line ran.", batch.StatusCancelled)
			case next >= len(r.items): // every line has its outcome; stop checks it
				return r.stop(ctx, batch.CodeLineLost, "The line has no recorded outcome.", batch.StatusCompleted)
			}
		}
		if sluice.Sleep(ctx, d.Poll); ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// start admits and enqueues lines from next while the batch's limits
// allow; it returns the first line not started and the lines it refused
// (the caller records them before it moves the cursor past them).
func (r *run) start(ctx context.Context, next int, inflight map[int]string, done map[int]bool) (int, []batch.Result, error) {
	d, b := r.d, &r.b
	cfg := d.Config
	rdb := d.Queue.Client()
	var refused []batch.Result
	for ; next < len(r.items); next++ {
		it := &r.items[next]
		if done[next] {
			continue
		}
		if it.req == nil { // refused at validation (recorded then; again here is a no-op)
			refused = append(refused, batch.ErrorLine(b.ID, it.Line, it.Err.Code, it.Err.Message))
			done[next] = true
			continue
		}
		timeout := time.Until(b.ExpiresAt)
		if timeout <= 0 {
			return next, refused, nil
		}
		id := r.jobID(it)
		slot, err := redisq.BatchSlot(ctx, rdb, b.UserID, id, cfg.Batch.LinesInFlight, cfg.Batch.LinesPerMinute, timeout)
		if err != nil || slot != redisq.BatchSlotTaken {
			return next, refused, err
		}
		exists, err := redisq.JobExists(ctx, rdb, id).Result()
		if err != nil {
			return next, refused, err
		}
		if exists > 0 { // enqueued by a run that died before it moved the cursor
			inflight[next] = id
			continue
		}
		job := &sluice.Job{ID: id, UserID: b.UserID, KeyID: b.Owner.KeyID, Model: it.req.Model.Name, Requested: it.req.Requested,
			Endpoint: b.Endpoint, Body: it.req.Upstream, Async: true, Priority: config.BatchClass, ServiceTier: sluice.TierBatch}
		prefixcache.Stamp(d.Config, job)
		var tk *admission.Ticket
		if d.Admission != nil {
			// A hold left by a run that died between admit and enqueue goes first.
			if err := d.Admission.ReleaseJob(ctx, b.UserID, id); err != nil {
				return next, refused, err
			}
			req := it.req
			tk, err = d.Admission.Admit(ctx, admission.Request{JobID: id, UserID: b.UserID, Tier: b.Owner.Tier, Model: req.Model,
				PromptBytes: req.PromptBytes, ExtraTokens: req.ExtraTokens, Messages: req.Messages, MaxTokens: req.MaxTokens,
				Room: req.Room, Prompts: req.Prompts, Choices: req.Choices, Async: true, Timeout: timeout,
				NoCompletion: req.NoCompletion, ServiceTier: sluice.TierBatch,
				Limits: b.Owner.Limits, Period: b.Owner.Period, Batch: true})
			if err != nil {
				redisq.BatchSlotFree(ctx, rdb, b.UserID, id) //nolint:errcheck // it lapses
				e := sluice.AsError(err)
				if e.Kind != sluice.KindQuota {
					return next, refused, err // Redis down: try again later
				}
				if len(inflight) > 0 { // what runs may give funds back: wait for it
					return next, refused, nil
				}
				if r.quotaSince.IsZero() {
					r.quotaSince = time.Now()
				}
				if time.Since(r.quotaSince) < 2*time.Second { // settlement of the last lines may lag
					return next, refused, nil
				}
				refused = append(refused, batch.ErrorLine(b.ID, it.Line, e.Code, e.Message))
				done[next] = true
				continue
			}
			r.quotaSince = time.Time{}
			job.Reserved, job.Hold = tk.Reserved, tk.Hold
		}
		if err := d.Queue.Enqueue(ctx, job, timeout); err != nil {
			if d.Admission != nil {
				d.Admission.Release(ctx, tk)
			}
			redisq.BatchSlotFree(ctx, rdb, b.UserID, id) //nolint:errcheck // it lapses
			if sluice.AsError(err).Code == sluice.CodeNoCapacity {
				return next, refused, nil // the queue is full: later
			}
			return next, refused, err
		}
		inflight[next] = id
	}
	return next, refused, nil
}

// collect records the outcome of every line whose job ended.
func (r *run) collect(ctx context.Context, inflight map[int]string, done map[int]bool, stopping bool) error {
	if len(inflight) == 0 {
		return nil
	}
	d, b := r.d, &r.b
	lines := make([]int, 0, len(inflight))
	for n := range inflight {
		lines = append(lines, n)
	}
	slices.Sort(lines)
	for chunk := range slices.Chunk(lines, 500) {
		ids := make([]string, len(chunk))
		for i, n := range chunk {
			ids[i] = inflight[n]
		}
		sts, err := d.Queue.Statuses(ctx, ids)
		if err != nil {
			return err
		}
		var rs []batch.Result
		var ended []string
		for i, n := range chunk {
			st := sts[i]
			if st != "" && !st.Terminal() {
				continue
			}
			res, err := r.outcome(ctx, r.items[n].Line, ids[i], st, stopping)
			if err != nil {
				return err
			}
			rs = append(rs, res)
			ended = append(ended, ids[i])
		}
		if len(rs) == 0 {
			continue
		}
		if err := d.Store.AddBatchResults(ctx, b.ID, rs); err != nil {
			return err
		}
		redisq.BatchSlotFree(ctx, d.Queue.Client(), b.UserID, ended...) //nolint:errcheck // they lapse
		for _, res := range rs {
			delete(inflight, res.Line)
			done[res.Line] = true
		}
		for _, id := range ended { // recorded: the job's body and result need not stay a day
			d.Queue.Delivered(ctx, id) //nolint:errcheck // else they expire with jobs.result_ttl
		}
	}
	return nil
}

// outcome is a line's output or error record from its ended job.
func (r *run) outcome(ctx context.Context, l batch.Line, id string, st sluice.JobStatus, stopping bool) (batch.Result, error) {
	b := &r.b
	if st == "" {
		return batch.ErrorLine(b.ID, l, batch.CodeLineLost, "The line's job record is gone (Redis lost it, or it outlived jobs.result_ttl)."), nil
	}
	js, err := r.d.Queue.Get(ctx, id, "")
	if errors.Is(err, sluice.ErrNotFound) {
		return batch.ErrorLine(b.ID, l, batch.CodeLineLost, "The line's job record is gone."), nil
	}
	if err != nil {
		return batch.Result{}, err
	}
	if js.ResultRef != "" {
		if js.Result, err = r.d.Objects.Fetch(ctx, js.ResultRef); err != nil {
			return batch.Result{}, err
		}
	}
	switch {
	case js.Status == sluice.JobSucceeded:
		return batch.ResponseLine(b.ID, l, 200, id, js.Result), nil
	case js.Status == sluice.JobCancelled && stopping:
		if time.Now().After(b.ExpiresAt) {
			return batch.ErrorLine(b.ID, l, batch.CodeBatchExpired, "The batch's 24h window ended while this line ran."), nil
		}
		return batch.ErrorLine(b.ID, l, batch.CodeBatchCancelled, "The batch was cancelled while this line ran."), nil
	}
	eb := sluice.ErrorBody{Message: "The line's job " + string(js.Status) + ".", Type: "server_error"}
	if js.Error != nil {
		eb = *js.Error
	}
	status := 500
	switch {
	case js.Status == sluice.JobExpired:
		status = 504
	case eb.Type == "invalid_request_error":
		status = 400
	}
	body, _ := jsonMarshal(map[string]any{"error": eb})
	return batch.ResponseLine(b.ID, l, status, id, body), nil
}

// stop records every line without an outcome as not run (code) and ends the batch.
func (r *run) stop(ctx context.Context, code, msg, status string) error {
	done, err := r.d.Store.BatchResultLines(ctx, r.b.ID)
	if err != nil {
		return err
	}
	has := make(map[int]bool, len(done))
	for _, n := range done {
		has[n] = true
	}
	var rs []batch.Result
	for _, it := range r.items {
		if !has[it.N] {
			rs = append(rs, batch.ErrorLine(r.b.ID, it.Line, code, msg))
		}
	}
	if err := r.d.Store.AddBatchResults(ctx, r.b.ID, rs); err != nil {
		return err
	}
	return r.finish(ctx, status)
}

// outFileID is the id of a batch's output or error file: the same whoever
// finalizes it, so a finalize that runs again after a crash writes the
// same object and row.
func outFileID(batchID, kind string) string {
	h := sha256.Sum256([]byte(batchID + ":" + kind))
	return "file-" + hex.EncodeToString(h[:12])
}

// finish writes the output and error files from the recorded outcomes and
// ends the batch with status.
func (r *run) finish(ctx context.Context, status string) error {
	d, b := r.d, &r.b
	if status == batch.StatusCompleted {
		if err := d.Store.SetBatchStatus(ctx, b.ID, d.Name, batch.StatusFinalizing); err != nil {
			return err
		}
	}
	write := func(ok bool, kind string) (*batch.File, error) {
		lines, err := d.Store.BatchResults(ctx, b.ID, ok)
		if err != nil || len(lines) == 0 {
			return nil, err
		}
		var buf bytes.Buffer
		for _, l := range lines {
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
		f := &batch.File{ID: outFileID(b.ID, kind), UserID: b.UserID, Purpose: batch.PurposeBatchOutput,
			Filename: b.ID + "_" + kind + ".jsonl", Bytes: int64(buf.Len())}
		f.StorageKey = batch.BlobKey(b.UserID, f.ID)
		if err := d.Blobs.Put(ctx, f.StorageKey, bytes.NewReader(buf.Bytes())); err != nil {
			return nil, err
		}
		return f, nil
	}
	out, err := write(true, "output")
	if err != nil {
		return err
	}
	errf, err := write(false, "error")
	if err != nil {
		return err
	}
	if err := d.Store.FinishBatch(ctx, b.ID, d.Name, status, out, errf); err != nil {
		return err
	}
	d.Log.InfoContext(ctx, "batch ended", slog.String("batch_id", b.ID), slog.String("status", status))
	return nil
}

func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	err := enc.Encode(v)
	return bytes.TrimRight(buf.Bytes(), "\n"), err
}

// FromDeps is the process's driver: its stores, queue and admission, named
// after the worker and the process, so a restarted process is a new owner.
func FromDeps(d *app.Deps) *Driver {
	host, _ := os.Hostname()
	return &Driver{Config: d.Config, Log: d.Log, Store: d.DB, Blobs: batch.OpenBlobs(d.Config), Queue: d.Queue,
		Admission: d.Admission, Objects: d.Objects, Name: fmt.Sprintf("%s/%s/%d/%d", d.Config.Env.WorkerName, host, os.Getpid(), time.Now().UnixNano())}
}

// parseLine validates a line's body as its route does live. A /v1/responses
// line runs unstored and alone: previous_response_id is refused (a batch
// has no conversation to continue, and the history is the caller's to send
// as input items).
func parseLine(endpoint string, body []byte, models openai.Models, lim openai.Limits) (*openai.Request, error) {
	if endpoint != sluice.EndpointResponses {
		return openai.Parse(endpoint, body, models, lim)
	}
	rr, err := openai.ParseResponses(body, models, lim, func(string) ([]json.RawMessage, error) {
		return nil, sluice.Invalid("previous_response_id", sluice.CodeInvalidValue,
			"previous_response_id is not supported in a batch: send the history as input items.")
	})
	if err != nil {
		return nil, err
	}
	return &rr.Request, nil
}
