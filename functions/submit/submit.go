// Package submit is the admission function: it authenticates a request,
// validates it, enqueues it as a job on its model's Redis stream, and either
// waits for the result (relaying streamed chunks as they arrive) or, for
// async jobs, returns the job id at once.
package submit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/authn"
	"github.com/sluice-ai/sluice/shared/batch"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/httpserve"
	"github.com/sluice-ai/sluice/shared/objstore"
	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/prefixcache"
	"github.com/sluice-ai/sluice/shared/redisq"
	"github.com/sluice-ai/sluice/shared/redisq/rkey"
	"github.com/sluice-ai/sluice/shared/sluice"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// Deps is what the submit function needs.
type Deps struct {
	Config   *config.Config
	Log      *slog.Logger
	Queue    *redisq.Queue
	Verifier *authn.Verifier
	// Admission applies limits and reserves funds; nil admits everything.
	Admission *admission.Admitter
	// Objects holds large results and async inputs (storage.jobs); nil
	// keeps every payload in Redis.
	Objects *objstore.Jobs
	// Responses reads and deletes stored /v1/responses responses
	// (postgres.DB); nil: none is found.
	Responses ResponseStore
	// Batches and Files serve the Files and Batch APIs (files.go,
	// batches.go): metadata and batches, and files' content. Either nil:
	// the routes are not served.
	Batches batch.Store
	Files   batch.Blobs
}

type service struct {
	Deps
	limits  openai.Limits
	adm     admitter      // Deps.Admission, or noAdmission when it is nil
	health  sync.Map      // model name → healthReading, for fallbacks (fallback.go)
	streams *takenStreams // answered jobs' result streams, deleted in batches
}

// New returns the submit function's handler.
func New(d Deps) http.Handler {
	s := &service{Deps: d, limits: openai.Limits{MaxMessages: d.Config.Server.MaxMessages,
		BytesPerTokenFloor: d.Config.Server.BytesPerTokenFloor}, adm: noAdmission{}}
	s.streams = &takenStreams{q: d.Queue, log: d.Log}
	if d.Admission != nil {
		s.adm = admitting{d.Admission}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("GET /v1/models/{model}", s.model)
	mux.HandleFunc("POST /v1/chat/completions", s.infer(sluice.EndpointChat))
	mux.HandleFunc("POST /v1/completions", s.infer(sluice.EndpointCompletion))
	mux.HandleFunc("POST /v1/responses", s.createResponse)
	mux.HandleFunc("GET /v1/responses/{id}", s.getResponse)
	mux.HandleFunc("GET /v1/responses/{id}/input_items", s.listInputItems)
	mux.HandleFunc("DELETE /v1/responses/{id}", s.deleteResponse)
	mux.HandleFunc("POST /v1/embeddings", s.infer(sluice.EndpointEmbeddings))
	mux.HandleFunc("POST /v1/jobs", s.createJob)
	mux.HandleFunc("GET /v1/jobs/{id}", s.getJob)
	mux.HandleFunc("DELETE /v1/jobs/{id}", s.cancelJob)
	mux.HandleFunc("GET /v1/admin/status", s.status)
	if d.Batches != nil && d.Files != nil {
		s.filesRoutes(mux)
		s.uploadRoutes(mux)
		s.batchRoutes(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.WriteError(w, r, s.Log, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound,
			"Unknown request URL: %s %s.", r.Method, r.URL.Path))
	})
	return httpserve.Middleware(d.Log, "submit", mux, httpserve.TrustProxies(d.Config.Server.TrustedProxyPrefixes()))
}

var handle = app.Lazy(func(d *app.Deps) http.Handler {
	return New(Deps{Config: d.Config, Log: d.Log, Queue: d.Queue, Verifier: d.Verifier, Admission: d.Admission, Objects: d.Objects,
		Responses: d.DB, Batches: d.DB, Files: batch.OpenBlobs(d.Config)})
})

// Handle is the OpenFaaS entry point: it builds the handler from the
// environment on first use.
func Handle(w http.ResponseWriter, r *http.Request) { handle(w, r) }

// authorize authenticates the request and checks one of the permissions
// (role and, for a scoped key, the key's scopes).
func (s *service) authorize(r *http.Request, perms ...string) (*sluice.Principal, error) {
	return s.Verifier.Require(r, s.Config.Permissions, perms...)
}

type modelObject struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
	// Task is Sluice's extension: generate (chat, completions) or embed
	// (embeddings), the requests the model serves.
	Task string `json:"task"`
	// Parent is set for a LoRA adapter: the model it adapts, as vLLM
	// lists its adapters.
	Parent string `json:"parent,omitempty"`
	// Pricing is Sluice's extension: integer micro-dollars per token, so the
	// console (and any client) can show what a model costs; absent when the
	// model has no price configured.
	Pricing *modelPricing `json:"pricing,omitempty"`
}

type modelPricing struct {
	InputMicros    int64 `json:"input_micros_per_token"`
	OutputMicros   int64 `json:"output_micros_per_token"`
	CachedResponse int64 `json:"cached_response_micros_per_token"`
	// Shown only where set, so a token-priced model's entry is unchanged.
	PerRequest   int64 `json:"per_request_micros,omitempty"`
	PerGPUSecond int64 `json:"per_gpu_second_micros,omitempty"`
	// CachedInput: a prompt token the engine served from its prefix cache
	// (pricing.<model>.cached_input_tokens); absent when unset (such
	// tokens cost input_micros_per_token).
	CachedInput *int64 `json:"cached_input_micros_per_token,omitempty"`
}

func (s *service) modelObj(m *config.Model) modelObject {
	o := modelObject{ID: m.Name, Object: "model", Created: 1700000000, OwnedBy: "sluice", MaxModelLen: m.MaxModelLen, Task: m.Task, Parent: m.Parent}
	if p, ok := s.Config.Pricing[m.Name]; ok {
		o.Pricing = &modelPricing{InputMicros: int64(p.InputTokens), OutputMicros: int64(p.OutputTokens), CachedResponse: int64(p.CachedResponse),
			PerRequest: int64(p.PerRequest), PerGPUSecond: int64(p.PerGPUSecond)}
		if c := p.CachedInputTokens; c != nil {
			v := int64(*c)
			o.Pricing.CachedInput = &v
		}
	}
	return o
}

func (s *service) models(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute, sluice.PermModelRead)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	data := make([]modelObject, 0, len(s.Config.Inference.Models)+len(s.Config.Aliases))
	for i := range s.Config.Inference.Models {
		if authn.AllowModel(p, s.Config.Inference.Models[i].Name) == nil {
			data = append(data, s.modelObj(&s.Config.Inference.Models[i]))
		}
	}
	for _, m := range s.Config.Inference.Models { // LoRA adapters, each with its parent
		for _, a := range s.Config.AdapterModels(m.Name) {
			if authn.AllowModel(p, a.Name) == nil {
				data = append(data, s.modelObj(&a))
			}
		}
	}
	aliases := make([]string, 0, len(s.Config.Aliases))
	for name := range s.Config.Aliases {
		aliases = append(aliases, name)
	}
	slices.Sort(aliases)
	for _, name := range aliases {
		if m, ok := s.Config.Resolve(name, p.UserID); ok && authn.AllowModel(p, name) == nil {
			o := s.modelObj(m)
			o.ID = name // the caller's version serves it; the name stays the alias
			data = append(data, o)
		}
	}
	openai.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *service) model(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute, sluice.PermModelRead)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	m, ok := s.Config.Resolve(r.PathValue("model"), p.UserID)
	if !ok || authn.AllowModel(p, r.PathValue("model")) != nil {
		openai.WriteError(w, r, s.Log, &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeModelNotFound,
			Param: "model", Message: "The model does not exist or you do not have access to it."})
		return
	}
	o := s.modelObj(m)
	o.ID = r.PathValue("model")
	openai.WriteJSON(w, http.StatusOK, o)
}

// admit validates an inference body into a job for p.
func (s *service) admit(p *sluice.Principal, endpoint string, body []byte) (*openai.Request, *sluice.Job, error) {
	req, err := openai.Parse(endpoint, body, s.Config.ForUser(p.UserID), s.limits)
	if err != nil {
		return nil, nil, err
	}
	public := req.Model.Name // a key's allowlist names what the client asks for: the alias, if any
	if req.Requested != "" {
		public = req.Requested
	}
	if err := authn.AllowModel(p, public); err != nil {
		return nil, nil, err
	}
	st, err := openai.AllowServiceTier(s.Config, p.Tier, req.ServiceTier)
	if err != nil {
		return nil, nil, err
	}
	return req, s.newJob(p, endpoint, req, st), nil
}

// newJob is the job for p's validated request at service tier st, on its
// model's queue.
func (s *service) newJob(p *sluice.Principal, endpoint string, req *openai.Request, st string) *sluice.Job {
	job := &sluice.Job{ID: rkey.NewUserJobID(req.Model.Name, p.UserID, s.Config.Jobs.Shards), UserID: p.UserID, KeyID: p.KeyID,
		Model: req.Model.Name, Requested: req.Requested, Endpoint: endpoint, Body: req.Upstream, Stream: req.Stream,
		Priority: s.Config.ServiceClass(p.Tier, st), ServiceTier: st}
	prefixcache.Stamp(s.Config, job) // its cache salt and placement chain
	return job
}

func (s *service) infer(endpoint string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authorize(r, sluice.PermInferenceExecute)
		if err != nil {
			openai.WriteError(w, r, s.Log, err) // refuse before reading the body
			return
		}
		body, err := openai.ReadBody(r, s.Config.Server.MaxBodyBytes)
		if err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
		req, job, err := s.admit(p, endpoint, body)
		if err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
		req, job = s.fallback(w, r, p, endpoint, body, req, job)
		httpserve.SetInference(r.Context(), job.Model, true, job.Stream)
		job.Trace = telemetry.From(r.Context()).Inject(r.Context())
		tk, err := s.reserve(w, r, p, req, job, false, s.Config.Server.RequestTimeout)
		if err != nil {
			openai.WriteError(w, r, s.Log, err)
			return
		}
		if s.serveCached(w, r, p, req, job, tk) {
			return
		}
		if err := s.Queue.Enqueue(r.Context(), job, s.Config.Server.RequestTimeout); err != nil {
			s.unreserve(r, tk)
			openai.WriteError(w, r, s.Log, err)
			return
		}
		lease := s.holdSlot(r, tk)
		defer lease.Release(r.Context()) // if relay has not
		w.Header().Set("Sluice-Job-Id", job.ID)
		s.relay(w, r, p, job, req, lease)
	}
}

// relay waits for a synchronous job's events and answers the client: the
// final body, or the chunks as SSE. A client that goes away cancels its job.
// The request's concurrency lease is free before the answer leaves, so a
// client's next request never finds this one still counted: the worker
// released it with the completion (the end event says so), else relay
// releases it first. A job whose record complete.lua already slimmed
// (ev.Slim) only has its result stream deleted (in a batch with others:
// takenStreams); any other is slimmed (Delivered). What follows a flushed
// answer runs after the handler returns (but under Lambda), so a kept-alive
// connection's next request is not held up by it.
func (s *service) relay(w http.ResponseWriter, r *http.Request, p *sluice.Principal, job *sluice.Job, req *openai.Request, lease *admission.Lease) {
	// A little past the deadline, so the worker's own "expired" arrives first.
	ctx, cancel := context.WithDeadline(r.Context(), job.Deadline.Add(2*time.Second))
	defer cancel()
	var sse *openai.SSE
	last := "0"
	// One Watch for the whole wait: the process's waits share a few Redis
	// connections (redisq's waiter hub) instead of holding one each.
	watch := s.Queue.Watch(job.ID)
	defer watch.Close()
	for {
		evs, err := watch.Next(ctx, last)
		if err != nil {
			s.abandon(r, job, err)
			switch {
			case r.Context().Err() != nil: // client gone: nothing to write
			case sse != nil:
				_, b := openai.Body(timeoutErr(err))
				sse.Error(b) //nolint:errcheck
			default:
				openai.WriteError(w, r, s.Log, timeoutErr(err))
			}
			return
		}
		for _, ev := range evs {
			last = ev.ID
			switch ev.Type {
			case "chunk":
				if !req.IncludeUsage && isUsageChunk(ev.Data) {
					continue
				}
				if sse == nil {
					sse = openai.StartSSE(w)
					sse.Named = job.Endpoint == sluice.EndpointResponses
					telemetry.From(r.Context()).FirstToken(job.Model, httpserve.Since(r.Context()))
				}
				if sse.Data([]byte(ev.Data)) != nil {
					s.abandon(r, job, r.Context().Err())
					return
				}
			case "end":
				if ev.ResultRef != "" { // too large for Redis: the worker wrote it to the object store first
					b, err := s.Objects.Fetch(r.Context(), ev.ResultRef)
					if err != nil {
						openai.WriteError(w, r, s.Log, err)
						return
					}
					ev.Result = string(b)
				}
				s.cacheStore(r, p, job, req, ev)
				sent := s.finish(w, r, sse, ev)
				if !ev.LeaseReleased {
					// Released before the answer leaves, so the client's
					// next request never finds this one still counted.
					s.taken(r, lease, job.ID, ev.Slim)
				}
				after := func(lease *admission.Lease) {
					if ev.LeaseReleased {
						// The worker released the lease with the completion
						// (redisq.Outcome.Lease): this deletes the result
						// stream and is the release's fallback.
						s.taken(r, lease, job.ID, ev.Slim)
					}
					s.delivered(r, job.ID, ev.ResultRef, ev.Slim)
				}
				if !sent { // an error answer, which leaves when the handler returns
					after(lease)
					return
				}
				http.NewResponseController(w).Flush() //nolint:errcheck // the client may be gone; delivered runs regardless
				if s.Config.Env.Lambda {
					// Lambda freezes the environment when the handler
					// returns: what follows the answer is done first.
					after(lease)
					return
				}
				// Off the connection: its next request (keep-alive) is read
				// only once the handler returns. The lease is released
				// already, so what follows holds nothing a limit counts; a
				// process that exits first leaves the stream to expire
				// (jobs.result_ttl).
				lease = lease.Handoff()
				if ev.LeaseReleased && ev.Slim && ev.ResultRef == "" {
					// The usual end: only the stream is left, deleted with
					// the others answered about now, in one pipeline. (The
					// worker's release needs no repeating: one that failed
					// lapses within admission.lease_ttl.)
					s.streams.add(job.ID)
					return
				}
				go after(lease)
				return
			}
		}
	}
}

func timeoutErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &sluice.Error{Kind: sluice.KindTimeout, Code: sluice.CodeDeadlineExceeded,
			Message: "The request's deadline passed before it completed.", Err: err}
	}
	return err
}

// abandon cancels a job whose caller stopped waiting.
func (s *service) abandon(r *http.Request, job *sluice.Job, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if _, err := s.Queue.Cancel(ctx, job.ID, job.UserID); err != nil && !errors.Is(err, sluice.ErrNotFound) {
		s.Log.WarnContext(ctx, "cancel failed", slog.String("job_id", job.ID), slog.String("err", err.Error()))
	}
	// Nobody will read its result: whenever it ends, keep only its status
	// and usage (jobs.sync_retention), not its body and result for a day.
	if err := s.Queue.Abandoned(ctx, job.ID); err != nil && !errors.Is(err, sluice.ErrNotFound) {
		s.Log.WarnContext(ctx, "abandoned job not slimmed; it expires after jobs.result_ttl",
			slog.String("job_id", job.ID), slog.String("err", err.Error()))
	}
}

// taken releases the request's lease, and for a job slimmed at its
// completion (slim) deletes its result stream, in one round trip (none when
// there is neither).
func (s *service) taken(r *http.Request, lease *admission.Lease, jobID string, slim bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	pipe := s.Queue.Pipeline()
	lease.ReleaseIn(ctx, pipe)
	if slim {
		s.Queue.ResultTaken(ctx, pipe, jobID)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.Log.WarnContext(ctx, "lease or result stream not released; they lapse", slog.String("job_id", jobID), slog.String("err", err.Error()))
	}
}

// delivered drops what a synchronous job held for its caller, now that the
// caller has it: the job keeps its status and usage for
// jobs.sync_retention (redisq.Delivered; already done at its completion
// when slim), and a result that went to the object store is deleted (else
// the sweeper takes it after storage.jobs.retention).
func (s *service) delivered(r *http.Request, jobID, resultRef string, slim bool) {
	if slim && resultRef == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if !slim {
		if err := s.Queue.Delivered(ctx, jobID); err != nil {
			s.Log.WarnContext(ctx, "delivered job not slimmed; it expires after jobs.result_ttl",
				slog.String("job_id", jobID), slog.String("err", err.Error()))
		}
	}
	if resultRef != "" && s.Objects != nil {
		s.Objects.Delete(ctx, resultRef) //nolint:errcheck // else the sweeper takes it
	}
}

// finish writes a job's answer. It reports whether the answer is complete
// and may be flushed at once: a success, whose length is known (or an SSE
// stream, already chunked); an error answer is left to the handler's end.
func (s *service) finish(w http.ResponseWriter, r *http.Request, sse *openai.SSE, ev redisq.Event) (sent bool) {
	if ev.Status == sluice.JobSucceeded {
		if sse != nil {
			sse.Done() //nolint:errcheck
			return true
		}
		if ev.Result == "" { // a streamed job whose chunks were all filtered
			openai.WriteJSON(w, http.StatusOK, map[string]any{})
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		// Its length, so a flush before the handler returns still sends a
		// plain body, not a chunked one.
		w.Header().Set("Content-Length", strconv.Itoa(len(ev.Result)))
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(ev.Result)) //nolint:errcheck
		return true
	}
	var eb sluice.ErrorBody
	if json.Unmarshal([]byte(ev.Error), &eb) != nil || eb.Message == "" {
		_, eb = openai.Body(&sluice.Error{Kind: sluice.KindInternal, Message: "The job " + string(ev.Status) + "."})
	}
	if sse != nil {
		sse.Error(eb) //nolint:errcheck
		return false
	}
	st := ev.HTTP
	if ev.Status == sluice.JobExpired {
		st = http.StatusGatewayTimeout
	}
	if st < 400 {
		st = http.StatusInternalServerError
	}
	openai.WriteRawError(w, st, eb)
	return false
}

// isUsageChunk reports whether a chunk is the final usage-only chunk, which
// the client did not ask for (Sluice always asks upstream, to meter).
func isUsageChunk(data string) bool {
	var c struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	return json.Unmarshal([]byte(data), &c) == nil && len(c.Choices) == 0 && len(c.Usage) > 0 && string(c.Usage) != "null"
}
