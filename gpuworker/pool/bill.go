package pool

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// tokenizeTimeout bounds the /tokenize calls that price a cut job's prompt.
const tokenizeTimeout = 5 * time.Second

// billFailed is the usage a job that did not succeed pays: the prompt the
// engine processed plus the completion tokens it produced. The engine's own
// count when it sent one; else the engine's tokenizer (POST /tokenize on a
// healthy endpoint of the model, one call per prompt); else the prompt bound
// the job's funds hold was taken for. A job the engine never ran (a refused
// connection, an error answer before any output, cancelled before output)
// pays nothing.
func (r *runner) billFailed(ctx context.Context, job sluice.Job, res *engine.Result, err error, cancelled bool) sluice.Usage {
	var u sluice.Usage
	if res != nil {
		u = res.Usage
		if u.CompletionTokens == 0 {
			u.CompletionTokens = int64(res.Produced) // a cut stream pays for what it produced
		}
	}
	if u.PromptTokens > 0 || !reachedEngine(res, err, cancelled) {
		return u
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*tokenizeTimeout)
	defer cancel()
	if n, ok := r.tokenizePrompt(bctx, job); ok {
		u.PromptTokens, u.PromptSource = n, sluice.PromptSourceTokenize
		return u
	}
	p, _, ok, herr := admission.Held(bctx, r.p.Queue.Client(), job.UserID, job.ID)
	if herr != nil {
		r.p.Log.WarnContext(ctx, "held prompt bound unreadable", slog.String("job_id", job.ID), slog.String("err", herr.Error()))
	}
	if ok && p > 0 {
		u.PromptTokens, u.PromptSource = p, sluice.PromptSourceHold
		return u
	}
	u.PromptSource = sluice.PromptSourceNone
	r.p.Log.WarnContext(ctx, "cut job's prompt not priced: no engine usage, tokenizer or hold", slog.String("job_id", job.ID))
	return u
}

// reachedEngine reports whether a failed call ran on the engine, so that
// the engine did the prompt's prefill.
func reachedEngine(res *engine.Result, err error, cancelled bool) bool {
	if res != nil && res.Chunks > 0 {
		return true
	}
	if cancelled {
		return false // cancelled before any output: the user pays nothing
	}
	var ee *engine.Error
	if !errors.As(err, &ee) {
		return res != nil
	}
	switch {
	case ee.Dial:
		return false
	case ee.Status != 0:
		return res != nil // an error event mid-stream (after the 200), not an error answer
	}
	return true // the connection broke (or the deadline passed) with the request sent
}

// tokenizePrompt counts the job's prompt with the engine's tokenizer, on the
// first healthy endpoint of the model that answers.
func (r *runner) tokenizePrompt(ctx context.Context, job sluice.Job) (int64, bool) {
	for _, e := range r.eps {
		if !e.healthy.Load() {
			continue
		}
		n, err := e.client.PromptTokens(ctx, job.Model, job.Endpoint, job.Body, tokenizeTimeout)
		if err == nil && n > 0 {
			return n, true
		}
		if errors.Is(err, engine.ErrNoTokenizer) {
			return 0, false
		}
		if err != nil {
			r.p.Log.WarnContext(ctx, "tokenize failed", slog.String("endpoint", e.client.Base), slog.String("err", err.Error()))
		}
	}
	return 0, false
}

// countPromptSource records where a billed job's prompt count came from.
func (r *runner) countPromptSource(u sluice.Usage) {
	switch {
	case u.PromptSource != "":
		r.p.Telemetry.PromptSource(u.PromptSource)
	case u.PromptTokens > 0:
		r.p.Telemetry.PromptSource(sluice.PromptSourceEngine)
	}
}
