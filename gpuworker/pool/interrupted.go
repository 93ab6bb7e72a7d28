package pool

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// endInterrupted ends a reclaimed job whose lost worker had already shown
// output to its client (redisq.StartInterrupted): it is not run again (the
// client would see text twice), but what it was shown was produced by an
// engine and is paid, as a cut stream pays: the prompt (the engine's
// tokenizer, else the held prompt bound) plus each shown chunk that carries
// output. It fails with worker_lost, or ends cancelled when its client had
// asked to cancel. If the chunks cannot be read the job stays pending and
// the next reclaim prices it.
func (r *runner) endInterrupted(ctx context.Context, c *redisq.Claimed) {
	job := c.Job
	chunks, err := r.p.Queue.ShownChunks(ctx, job.ID)
	if err != nil {
		r.p.Log.WarnContext(ctx, "interrupted job's output unreadable; it will be reclaimed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
		return
	}
	res := &engine.Result{Chunks: len(chunks)}
	for _, ch := range chunks {
		if engine.ChunkProduces([]byte(ch)) {
			res.Produced++
		}
	}
	d := done{o: redisq.Outcome{Status: sluice.JobFailed, HTTP: http.StatusInternalServerError, Error: sluice.ErrWorkerLost}}
	if c.Cancelled {
		d.o = redisq.Outcome{Status: sluice.JobCancelled, HTTP: 499, Error: sluice.ErrJobCancelled}
	}
	d.err = d.o.Error
	d.usage = r.billFailed(ctx, job, res, nil, c.Cancelled)
	r.p.Log.WarnContext(ctx, "reclaimed a job whose lost worker had shown output: billed what was shown",
		slog.String("job_id", job.ID), slog.Int("chunks", res.Chunks), slog.Int64("prompt_tokens", d.usage.PromptTokens),
		slog.Int64("completion_tokens", d.usage.CompletionTokens))
	r.finish(ctx, c.Entry, job, d, telemetry.Span{})
}
