package pool

import (
	"context"
	"sync"

	"github.com/sluice-ai/sluice/shared/redisq"
)

// chunkWriter relays a job's streamed chunks to Redis without making the
// upstream read wait for each write: chunks that arrive while a write is in
// flight go out together in the next pipelined round trip.
type chunkWriter struct {
	q     *redisq.Queue
	jobID string

	mu      sync.Mutex
	pending []string
	wrote   bool  // a batch has been written (the job has shown output)
	err     error // first write error; later chunks are dropped
	kick    chan struct{}
	done    chan struct{}
}

func newChunkWriter(ctx context.Context, q *redisq.Queue, jobID string) *chunkWriter {
	w := &chunkWriter{q: q, jobID: jobID, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go w.loop(ctx)
	return w
}

// add queues one chunk; it fails once a write has failed, aborting the job.
func (w *chunkWriter) add(data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.pending = append(w.pending, string(data))
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// close writes what is left and reports whether any output was written.
func (w *chunkWriter) close() (shown bool, err error) {
	close(w.kick)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wrote, w.err
}

func (w *chunkWriter) loop(ctx context.Context) {
	defer close(w.done)
	for range w.kick {
		w.flush(ctx)
	}
	w.flush(ctx)
}

func (w *chunkWriter) flush(ctx context.Context) {
	w.mu.Lock()
	batch, first := w.pending, !w.wrote
	w.pending = nil
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	err := w.q.Chunks(context.WithoutCancel(ctx), w.jobID, batch, first)
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	w.wrote = w.wrote || err == nil
	w.mu.Unlock()
}
