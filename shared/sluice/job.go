package sluice

import (
	"encoding/json"
	"time"
)

// JobStatus is a job's state; terminal states never change again.
type JobStatus string

// Job states, as GET /v1/jobs/{id} reports them.
const (
	JobQueued    JobStatus = "queued"
	JobRunning   JobStatus = "running"
	JobSucceeded JobStatus = "succeeded"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
	JobExpired   JobStatus = "expired"
)

// Terminal reports whether s is a final state.
func (s JobStatus) Terminal() bool {
	switch s {
	case JobSucceeded, JobFailed, JobCancelled, JobExpired:
		return true
	}
	return false
}

// Endpoint kinds a job targets, i.e. the upstream OpenAI route.
const (
	EndpointChat       = "/v1/chat/completions"
	EndpointCompletion = "/v1/completions"
	EndpointEmbeddings = "/v1/embeddings"
	EndpointResponses  = "/v1/responses"
)

// Service tiers a job runs at (OpenAI's service_tier, plus batch for a
// batch's lines): they choose its queue class and its price.
const (
	TierDefault  = "default"
	TierFlex     = "flex"
	TierPriority = "priority"
	TierBatch    = "batch"
)

// Job is one inference request travelling through the queue.
type Job struct {
	ID        string          `json:"id"`
	UserID    string          `json:"user_id"`
	KeyID     string          `json:"key_id,omitempty"`
	Model     string          `json:"model"`
	Requested string          `json:"requested_model,omitempty"` // the name asked for, when an alias chose Model
	Endpoint  string          `json:"endpoint"`                  // EndpointChat or EndpointCompletion
	Body      json.RawMessage `json:"body"`                      // the normalised upstream request
	// BodyRef is the object-store key of Body when an async input was too
	// large to keep in Redis; Body is then empty until the worker fetches it.
	BodyRef  string `json:"body_ref,omitempty"`
	Stream   bool   `json:"stream"`   // relay chunks as they come
	Priority int    `json:"priority"` // 0 is served first
	// ServiceTier is the tier the job runs at (TierDefault when empty):
	// it sets the price factor the settler charges at.
	ServiceTier string `json:"service_tier,omitempty"`
	Async       bool   `json:"async"`
	WebhookURL  string `json:"webhook_url,omitempty"`
	// Reserved: admission holds funds and a slot for the job, so its end
	// must be settled (every terminal path emits a settle event).
	Reserved bool `json:"reserved,omitempty"`
	// Hold is the terms admission reserved the job's funds at (bounds,
	// prices, period, model; the amounts held are not in it): a settler
	// that finds the hold itself gone charges the job's usage at these
	// prices all the same.
	Hold      string    `json:"hold,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Deadline  time.Time `json:"deadline"`
	// Trace is the W3C traceparent of the request that created the job, so
	// the worker's spans join the client's trace; empty with tracing off.
	Trace string `json:"trace,omitempty"`
	// CacheSalt is vLLM's cache_salt for the job (an HMAC of its account id,
	// shared/prefixcache): engine cache entries made under one salt serve
	// only requests with the same salt. Empty when the operator shares the
	// cache across accounts (inference.prefix_cache.share_across_accounts).
	CacheSalt string `json:"cache_salt,omitempty"`
	// Prefix is the chain of block hashes of the job's prompt prefix
	// (salted as CacheSalt), by which the claim places it on the endpoint
	// that holds that prefix; empty for a prompt too short to place.
	Prefix []string `json:"prefix,omitempty"`
	// Response is what a /v1/responses job carries beyond its body (its
	// response id, whether and how to store it); nil for other endpoints.
	Response *ResponseJob `json:"response,omitempty"`
}

// Usage is the token count of one job, as the engine reported it.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	CachedTokens     int64 `json:"cached_tokens,omitempty"`
	// PromptSource says where PromptTokens came from when the engine did not
	// report it (a cut or failed job): PromptSourceTokenize, PromptSourceHold
	// or PromptSourceNone; empty is the engine's own usage.
	PromptSource string `json:"prompt_source,omitempty"`
}

// Where a billed job's prompt token count came from.
const (
	PromptSourceEngine   = "engine"   // the engine's usage
	PromptSourceTokenize = "tokenize" // the engine's POST /tokenize of the job's prompt
	PromptSourceHold     = "hold"     // the prompt bound its funds hold was taken for
	PromptSourceNone     = "none"     // nothing known: no prompt billed
)

// UsageEvent is what the worker records once per finished job; the job id is
// its key, so a redelivered event is never counted twice.
type UsageEvent struct {
	JobID     string    `json:"job_id"`
	UserID    string    `json:"user_id"`
	KeyID     string    `json:"key_id,omitempty"`
	Model     string    `json:"model"`                     // the model (version) that served the job
	Requested string    `json:"requested_model,omitempty"` // the alias asked for, if any
	Status    JobStatus `json:"status"`
	Usage     Usage     `json:"usage"`
	LatencyMS int64     `json:"latency_ms"`
	EngineMS  int64     `json:"engine_ms,omitempty"` // time spent in engine calls, rounded up (GPU-second prices)
	// ServiceTier is the tier the job ran at (flex, priority, batch);
	// empty at the default tier.
	ServiceTier string    `json:"service_tier,omitempty"`
	CreatedAt   time.Time `json:"created_at"` // the job's creation time
	EndedAt     time.Time `json:"ended_at"`
}

// JobState is a job as a client may see it.
type JobState struct {
	ID        string          `json:"id"`
	Object    string          `json:"object"`
	Status    JobStatus       `json:"status"`
	Model     string          `json:"model"`
	URL       string          `json:"url"`
	CreatedAt int64           `json:"created_at"`
	EndedAt   int64           `json:"ended_at,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *ErrorBody      `json:"error,omitempty"`
	Usage     *Usage          `json:"usage,omitempty"`
	// ResultRef is the object-store key of Result when the result was too
	// large to keep in Redis; readers fetch it into Result before showing
	// the job to anyone.
	ResultRef string `json:"-"`
}

// ErrorBody is the OpenAI error object, as stored with a failed job.
type ErrorBody struct {
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   any    `json:"param"`
	Code    any    `json:"code"`
}
