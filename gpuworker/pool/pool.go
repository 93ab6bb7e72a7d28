// Package pool is the GPU worker: it pulls jobs from its models' Redis
// streams only when an engine endpoint has a free batch slot, sends one
// upstream request per job, streams results back, and completes each job
// (result, usage event, ack) in one atomic step.
package pool

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/filter"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// UsageStore writes usage rows; postgres.DB implements it.
type UsageStore interface {
	InsertUsage(ctx context.Context, evs []sluice.UsageEvent) (int64, error)
}

// Deps is what a worker needs.
type Deps struct {
	Config *config.Config
	Log    *slog.Logger
	Queue  *redisq.Queue
	Usage  UsageStore
	// Name identifies this worker in the consumer groups; default host-pid.
	Name string
	// Telemetry records the worker's metrics and spans; nil records nothing.
	Telemetry *telemetry.Telemetry
	// Objects holds large results and async inputs (storage.jobs); nil
	// keeps every payload in Redis.
	Objects *objstore.Jobs
	// Responses keeps stored /v1/responses responses; nil uses Usage when
	// it can (postgres.DB does).
	Responses ResponseStore
	// Artifacts holds the signed LoRA adapter artifacts (storage.bucket,
	// storage.model_prefix); nil: objstore.New(Config) when an adapter
	// has a version.
	Artifacts *objstore.Store
}

// Pool is one worker process's set of model runners.
type Pool struct {
	Deps
	runners []*runner
	redact  *filter.Redactor // nil: output filters off
	// adapterKey verifies adapter artifacts (inference.adapter_public_key).
	adapterKey ed25519.PublicKey

	mu      sync.Mutex
	running map[string]*task // job id → running task
}

// task is a job being run.
type task struct {
	cancel    context.CancelFunc
	cancelled atomic.Bool // the owner cancelled it
	entry     redisq.Entry
}

// New builds a worker for every configured model with endpoints (or only
// those in worker.models).
func New(d Deps) (*Pool, error) {
	if d.Name == "" {
		host, _ := os.Hostname()
		d.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if rs, ok := d.Usage.(ResponseStore); ok && d.Responses == nil {
		d.Responses = rs
	}
	p := &Pool{Deps: d, running: map[string]*task{}}
	var err error
	if p.redact, err = filter.New(d.Config.Filters); err != nil {
		return nil, err
	}
	only := map[string]bool{}
	for _, m := range d.Config.Worker.Models {
		only[m] = true
	}
	for _, m := range d.Config.Inference.Models {
		if len(only) > 0 && !only[m.Name] {
			continue
		}
		if len(m.Endpoints) == 0 {
			continue
		}
		r := newRunner(p, m)
		p.runners = append(p.runners, r)
		p.runners = append(p.runners, adapterRunners(p, r)...)
	}
	if p.adapterKey, err = loadAdapterKey(d.Config); err != nil {
		return nil, err
	}
	if p.adapterKey != nil && p.Artifacts == nil {
		p.Artifacts = objstore.New(d.Config)
	}
	if len(p.runners) == 0 {
		return nil, errors.New("worker: no model has endpoints to serve (set inference.models[].endpoints)")
	}
	return p, nil
}

// Run serves until ctx ends, then drains: it stops pulling at once, lets
// running jobs finish for up to worker.drain_timeout, and hands the rest back.
func (p *Pool) Run(ctx context.Context) error {
	hard, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	for _, r := range p.runners {
		for _, s := range r.streams {
			if err := p.Queue.EnsureGroup(ctx, s, rkey.GroupWorkers); err != nil {
				return err
			}
		}
	}
	var wg sync.WaitGroup
	var jobs sync.WaitGroup
	for _, r := range p.runners {
		wg.Add(2)
		for _, e := range r.eps {
			if r.parent != nil {
				break // an adapter's runner shares its parent's endpoints, watched there
			}
			wg.Add(2)
			go func() { defer wg.Done(); r.health(ctx, e) }()
			go func() { defer wg.Done(); r.scrape(ctx, e) }()
			if len(r.family) > 1 {
				wg.Add(1)
				go func() { defer wg.Done(); r.listAdapters(ctx, e) }()
			}
		}
		go func() { defer wg.Done(); r.dispatch(ctx, hard, &jobs) }()
		go func() { defer wg.Done(); r.publishLoop(ctx) }()
	}
	wg.Add(5)
	go func() { defer wg.Done(); p.sweepObjects(ctx) }()
	go func() { defer wg.Done(); p.heartbeat(ctx) }()
	go func() { defer wg.Done(); p.listenCancels(hard) }()
	go func() { defer wg.Done(); p.flushUsage(hard) }()
	go func() { defer wg.Done(); p.deliverHooks(hard) }()
	p.Log.InfoContext(ctx, "worker started", slog.String("worker", p.Name), slog.Int("models", len(p.runners)))

	<-ctx.Done()
	p.Log.InfoContext(ctx, "worker draining", slog.String("worker", p.Name), slog.Int("running", p.runningCount()))
	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.Config.Worker.DrainTimeout):
		p.Log.WarnContext(ctx, "drain timeout: aborting running jobs", slog.Int("running", p.runningCount()))
		p.mu.Lock()
		for _, t := range p.running {
			t.cancel()
		}
		p.mu.Unlock()
		<-done
	}
	// Let the usage writer take what the last jobs produced, then stop.
	time.Sleep(2 * p.Config.Worker.UsageFlush)
	hardCancel()
	wg.Wait()
	return nil
}

func (p *Pool) runningCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.running)
}

// heartbeat re-claims the entries of running jobs so no other worker takes
// them while they live.
func (p *Pool) heartbeat(ctx context.Context) {
	t := time.NewTicker(p.Config.Worker.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		byStream := map[string][]string{}
		p.mu.Lock()
		for _, tk := range p.running {
			byStream[tk.entry.Stream] = append(byStream[tk.entry.Stream], tk.entry.ID)
		}
		p.mu.Unlock()
		for s, ids := range byStream {
			if err := p.Queue.Heartbeat(ctx, rkey.GroupWorkers, p.Name, s, ids); err != nil && ctx.Err() == nil {
				p.Log.WarnContext(ctx, "heartbeat failed", slog.String("err", err.Error()))
			}
		}
	}
}

// listenCancels aborts running jobs whose owner cancelled them.
func (p *Pool) listenCancels(ctx context.Context) {
	for ctx.Err() == nil {
		sub := p.Queue.Client().Subscribe(ctx, rkey.CancelChannel)
		ch := sub.Channel()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case m, ok := <-ch:
				if !ok {
					break loop
				}
				p.mu.Lock()
				if t := p.running[m.Payload]; t != nil {
					t.cancelled.Store(true)
					t.cancel()
				}
				p.mu.Unlock()
			}
		}
		sub.Close()
		sleep(ctx, time.Second)
	}
}

// sleep waits d or until ctx ends.
var sleep = sluice.Sleep

// sweepObjects deletes job objects older than storage.jobs.retention, by
// when the Redis records that point at them have expired. Every worker
// sweeps; deleting twice is harmless.
func (p *Pool) sweepObjects(ctx context.Context) {
	if p.Objects == nil {
		return
	}
	every := p.Config.Storage.Jobs.SweepInterval
	for {
		sleep(ctx, every)
		if ctx.Err() != nil {
			return
		}
		n, err := p.Objects.Sweep(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			p.Log.WarnContext(ctx, "job object sweep failed", slog.String("err", err.Error()))
		}
		if n > 0 {
			p.Log.InfoContext(ctx, "expired job objects deleted", slog.Int("objects", n))
		}
	}
}
