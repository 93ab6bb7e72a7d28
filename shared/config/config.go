// Package config is Sluice's one typed configuration: a YAML file whose blocks
// mirror the design document, over built-in defaults, plus connection strings
// and secrets from the environment. It is read once at start and passed down;
// nothing else reads the environment.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the built-in configuration file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Config is the whole configuration. Zero values are replaced by the defaults
// documented on each field when Load runs.
type Config struct {
	Inference   Inference                `yaml:"inference"`
	Pricing     map[string]ModelPrice    `yaml:"pricing"`
	Tiers       map[string]Tier          `yaml:"tiers"`
	Auth        Auth                     `yaml:"auth"`
	Autoscaling map[string]AutoscaleRule `yaml:"autoscaling"`
	Server      Server                   `yaml:"server"`
	Jobs        Jobs                     `yaml:"jobs"`
	Worker      Worker                   `yaml:"worker"`
	Telemetry   Telemetry                `yaml:"telemetry"`
	Admission   Admission                `yaml:"admission"`
	Storage     Storage                  `yaml:"storage"`
	Dispatch    Dispatch                 `yaml:"dispatch"`
	Filters     Filters                  `yaml:"filters"`
	Aliases     map[string]Alias         `yaml:"aliases"`
	Billing     Billing                  `yaml:"billing"`
	UsageRollup UsageRollup              `yaml:"usage_rollup"`
	Database    Database                 `yaml:"database"`
	Redis       Redis                    `yaml:"redis"`
	Batch       Batch                    `yaml:"batch"`
	Responses   Responses                `yaml:"responses"`

	// Env holds what comes from the environment, never from the file.
	Env Env `yaml:"-"`

	adapters []Model // the adapters' models, built by applyAdapterDefaults
}

// Inference lists the models and where their engines are.
type Inference struct {
	Engine string  `yaml:"engine"` // vllm (default)
	Models []Model `yaml:"models"`
	// PrefixCache: how requests are placed by prompt prefix and whether
	// accounts share the engines' KV cache (cache.go).
	PrefixCache PrefixCache `yaml:"prefix_cache"`
	// AdapterPublicKey is the ed25519 public key (PEM file) that LoRA
	// adapters' artifacts must be signed under before the worker loads
	// one at run time (adapters.go); empty: none is loaded at run time.
	AdapterPublicKey string `yaml:"adapter_public_key"`
}

// Model is one served model.
type Model struct {
	Name         string   `yaml:"name"`
	Engine       string   `yaml:"engine"`         // defaults to inference.engine
	Replicas     int      `yaml:"replicas"`       // deployment count for manifests
	GPUMemory    string   `yaml:"gpu_memory"`     // e.g. 16GB, for manifests
	MaxBatchSize int      `yaml:"max_batch_size"` // in-flight requests per endpoint; default 16
	MaxModelLen  int      `yaml:"max_model_len"`  // prompt + completion tokens; default 4096
	Endpoints    []string `yaml:"endpoints"`      // vLLM base URLs, e.g. http://10.0.0.5:8000
	// SchedulingPolicy is the engines' --scheduling-policy: fcfs (default)
	// or priority. Only to a priority engine does Sluice send vLLM's
	// `priority` field (from the job's queue class): an fcfs engine
	// refuses it (tiers.go).
	SchedulingPolicy string `yaml:"scheduling_policy"`
	// EngineInput: template overheads, media bounds and allowed fields,
	// for the prompt bound (engineinput.go).
	EngineInput `yaml:",inline"`
	// ModelRouting: task and fallbacks (routing.go).
	ModelRouting `yaml:",inline"`
	// Adapters: LoRA adapters served on this model's endpoints
	// (adapters.go).
	Adapters []Adapter `yaml:"adapters"`
	// MaxLoRAs is the engines' --max-loras: how many adapters the worker
	// lets one endpoint hold when it loads one at run time (those the
	// engine lists count); default 1, vLLM's.
	MaxLoRAs int `yaml:"max_loras"`
	// Parent is, for an adapter's model (Config.Model of an adapter name),
	// the model it adapts; empty for a configured model.
	Parent string `yaml:"-"`
}

// ModelPrice is the per-token price of a model in micro-dollars.
type ModelPrice struct {
	InputTokens  Micros `yaml:"input_tokens"`
	OutputTokens Micros `yaml:"output_tokens"`
	// CachedResponse: per token of a response served from the response
	// cache (no GPU); default 0.
	CachedResponse Micros `yaml:"cached_response"`
	// CachedInputTokens: per prompt token the engine served from its prefix
	// cache (usage.prompt_tokens_details.cached_tokens); nil (the default)
	// prices them as input_tokens. A pointer so 0 (free) can be said. At
	// most input_tokens (validated): admission holds every prompt token
	// at input_tokens, so a cached token can never cost more than its hold,
	// and a token the engine did not prefill costs it less, never more.
	CachedInputTokens *Micros `yaml:"cached_input_tokens"`
	// PerRequest: charged once per job that ran (used tokens or engine
	// time); default 0. Paid from credit, then overage: included tokens
	// cover tokens only.
	PerRequest Micros `yaml:"per_request"`
	// PerGPUSecond: per second of engine time the worker measured, charged
	// per started millisecond as ceil(ms × price / 1000) micro-dollars (so a
	// price needs no fractional micro-dollars per millisecond); default 0.
	// Paid from credit, then overage, like PerRequest.
	PerGPUSecond Micros `yaml:"per_gpu_second"`
	// BatchDiscount: the share taken off a batch line's price, 0..1;
	// default 0.5 (as OpenAI). A pointer so 0 (no discount) can be said.
	BatchDiscount *float64 `yaml:"batch_discount"`
	// FlexDiscount: the share taken off a service_tier=flex job's price,
	// 0..1; default 0.5.
	FlexDiscount *float64 `yaml:"flex_discount"`
	// PriorityMultiplier: a service_tier=priority job's price factor,
	// ≥ 1; default 2.
	PriorityMultiplier *float64 `yaml:"priority_multiplier"`
}

// Tier is a subscription tier.
type Tier struct {
	MonthlyCost     Quantity `yaml:"monthly_cost"`     // micro-dollars, or custom
	IncludedCredits Quantity `yaml:"included_credits"` // tokens per month, unlimited or custom
	RateLimit       Quantity `yaml:"rate_limit"`       // requests per minute, unlimited or custom
	// Priority orders the queues: 0 first. Defaults: enterprise 0, pro 1,
	// others 2; at most BatchClass-1 (the last class is batch work's).
	Priority *int `yaml:"priority"`
	// ServiceTiers lists the service_tier values the tier's requests may
	// ask for (auto, default, flex, priority); default: all four, but free
	// gets no priority (tiers.go).
	ServiceTiers []string `yaml:"service_tiers"`
	// TierLimits: Sluice's own limits and overage policy (admission.go).
	TierLimits `yaml:",inline"`
}

// Auth is the design's auth block.
type Auth struct {
	Provider string   `yaml:"provider"` // sluice (default) or keycloak
	Realm    string   `yaml:"realm"`
	Features []string `yaml:"features"`
	Session  Session  `yaml:"session"`
	RBAC     RBAC     `yaml:"rbac"`
	Identity Identity `yaml:"identity"` // sessions, MFA, keys, abuse limits (identity.go)
}

// Session sets login lifetimes.
type Session struct {
	Timeout        int  `yaml:"timeout"` // seconds a login lives without use; default 3600
	RefreshEnabled bool `yaml:"refresh_enabled"`
}

// RBAC maps roles to permissions.
type RBAC struct {
	Roles       []string            `yaml:"roles"`
	Permissions map[string][]string `yaml:"permissions"`
}

// AutoscaleRule is one autoscaling rule from the design (used by manifests).
type AutoscaleRule struct {
	Metric      string `yaml:"metric"`
	Target      string `yaml:"target"`
	MinReplicas int    `yaml:"min_replicas"`
	MaxReplicas int    `yaml:"max_replicas"`
}

// Server configures the functions' HTTP handling.
type Server struct {
	// MaxBodyBytes bounds a request body; default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RequestTimeout bounds a synchronous request end to end; default 5m.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxMessages bounds the messages of one chat request; default 2048.
	MaxMessages int `yaml:"max_messages"`
	// BytesPerTokenFloor: a prompt needs at least bytes/this many tokens, so a
	// prompt longer than max_model_len*this bytes is refused at admission
	// without a tokenizer. Default 32 (no vocabulary token is longer).
	BytesPerTokenFloor int `yaml:"bytes_per_token_floor"`
	// KeyCacheTTL is how long a verified key stays cached in-process; default 1s.
	KeyCacheTTL time.Duration `yaml:"key_cache_ttl"`
	// TrustedProxies lists the proxies (CIDRs or addresses) whose
	// X-Forwarded-For is believed: when the socket peer is in one, the
	// client is the rightmost forwarded address not in any. List every hop
	// that forwards to the functions: the OpenFaaS gateway and watchdog,
	// the ingress or load balancer, nginx. Default empty: the peer is the
	// client (right when nothing proxies, and on Lambda, whose adapter
	// gives the source IP).
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TrustedProxyPrefixes parses TrustedProxies (validate has checked them):
// a bare address is a single-address prefix.
func (s Server) TrustedProxyPrefixes() []netip.Prefix {
	out, _ := parseProxies(s.TrustedProxies)
	return out
}

func parseProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Jobs configures the queue and async jobs.
type Jobs struct {
	// ResultTTL is how long a finished job and its result are kept; default 24h.
	ResultTTL time.Duration `yaml:"result_ttl"`
	// SyncRetention is how long a synchronous request's job record is kept
	// once its answer was delivered (or its caller left): only its status,
	// usage and what settlement needs (a few hundred bytes), for
	// GET /v1/jobs/{id}; its body and result are dropped at delivery, so
	// Redis memory is bytes-per-request × req/s × this, not × result_ttl.
	// Default 15m; at most result_ttl.
	SyncRetention time.Duration `yaml:"sync_retention"`
	// AsyncDeadline is how long an async job may wait before it expires; default 1h.
	AsyncDeadline time.Duration `yaml:"async_deadline"`
	// MaxAttempts: a job is dead-lettered after this many tries; default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxQueue is the most entries one model stream holds before new requests
	// get 503 no_capacity; default 100000.
	MaxQueue int64 `yaml:"max_queue"`
	// Shards is how many Redis Cluster slots each model's queue is split
	// over, so one model's load can use several masters; default 1 (the
	// unsharded key names), at most 256. A user's jobs stay in one shard, so
	// fairness between users is per shard (docs/ARCHITECTURE.md, Fairness).
	// Raise it freely; lowering it strands the jobs queued in the dropped
	// shards until it is raised again.
	Shards int `yaml:"shards"`
	// Webhooks configures job-completion callbacks.
	Webhooks Webhooks `yaml:"webhooks"`
}

// Webhooks configures outbound job callbacks.
type Webhooks struct {
	// AllowPrivate lets webhooks target loopback and private addresses
	// (tests and single-machine setups); default false.
	AllowPrivate bool `yaml:"allow_private"`
	// MaxAttempts before a delivery is given up; default 6.
	MaxAttempts int `yaml:"max_attempts"`
	// Timeout of one delivery attempt; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Concurrency is how many deliveries one worker makes at once; default 16.
	// A failed attempt waits its backoff without holding one.
	Concurrency int `yaml:"concurrency"`
	// UserConcurrency is how many of them one user's webhooks may take at
	// once; default 2. Past it, that user's deliveries wait their turn, so a
	// host that never answers delays only its own user's webhooks.
	UserConcurrency int `yaml:"user_concurrency"`
	// UserTime is the most delivery time one user's webhooks may take per
	// minute, across workers; default 60s. Past it, that user's deliveries
	// wait for the next minute.
	UserTime time.Duration `yaml:"user_time"`
}

// Worker configures the GPU worker.
type Worker struct {
	// Models limits this worker to these models; empty means all.
	Models []string `yaml:"models"`
	// Heartbeat is how often running jobs are re-claimed to show they live; default 5s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// ClaimIdle is how long an entry may sit unacknowledged and un-heartbeated
	// before another worker takes it; default 30s.
	ClaimIdle time.Duration `yaml:"claim_idle"`
	// Retries of a job's upstream call on 429/503/connection errors inside one
	// attempt; default 3.
	Retries int `yaml:"retries"`
	// RetryBackoff is the first backoff, doubled each retry; default 200ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// DrainTimeout bounds the wait for running jobs on SIGTERM; default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// UsageBatch is the most usage rows written in one statement; default 500.
	UsageBatch int `yaml:"usage_batch"`
	// UsageFlush is the longest a usage event waits before it is written; default 200ms.
	UsageFlush time.Duration `yaml:"usage_flush"`
	// UsageLinger is how long the usage writer waits for more events after
	// writing a partial batch, so that a low request rate still writes rows
	// in batches instead of a transaction per request; default 25ms,
	// negative: none. At most usage_flush.
	UsageLinger time.Duration `yaml:"usage_linger"`
	// Listen is where the standalone worker serves /metrics, /healthz and
	// /readyz; default ":9464"; "off" serves nothing.
	Listen string `yaml:"listen"`
}

// Env is what comes from environment variables.
type Env struct {
	DatabaseURL   string // DATABASE_URL
	RedisURL      string // REDIS_URL
	KeyPepper     string // SLUICE_KEY_PEPPER: HMAC key for API keys, >= 32 bytes
	WebhookSecret string // SLUICE_WEBHOOK_SECRET: signs job webhooks; the GPU worker refuses to start without >= 32 bytes (sluice dev generates one)
	Addr          string // SLUICE_ADDR: listen address; default 127.0.0.1:8080
	ConfigPath    string // SLUICE_CONFIG
	WorkerName    string // SLUICE_WORKER_NAME: the worker's consumer name; default host-pid
	S3AccessKey   string // SLUICE_S3_ACCESS_KEY (or secret file sluice-s3-access-key)
	S3SecretKey   string // SLUICE_S3_SECRET_KEY (or secret file sluice-s3-secret-key)

	// KeyPepperPrevious (SLUICE_KEY_PEPPER_PREVIOUS) is the pepper being
	// rotated out: keys hashed under it still verify and are rehashed.
	KeyPepperPrevious string

	// Stripe: STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and
	// STRIPE_WEBHOOK_SECRET_PREVIOUS (or the secret files stripe-secret-key,
	// stripe-webhook-secret, stripe-webhook-secret-previous); STRIPE_API_BASE
	// points the client elsewhere (stripe-mock in tests). No key: billing
	// answers 503 and nothing is sent to Stripe.
	StripeSecretKey, StripeWebhookSecret, StripeWebhookSecretPrevious string
	StripeAPIBase                                                     string

	// DatabaseReadURL (DATABASE_READ_URL) is a streaming read replica for
	// the report reads (usage, statements, invoices, revenue, business
	// metrics) while it is up and within database.read_max_lag; empty:
	// DatabaseURL serves them. Keys, users and balances are always read
	// from DatabaseURL.
	DatabaseReadURL string

	// RollupToken (SLUICE_ROLLUP_TOKEN or the secret file
	// sluice-rollup-token) lets a scheduler trigger the usage rollup with
	// "Authorization: Bearer <token>"; empty: no token is accepted.
	RollupToken string

	// Lambda (AWS_LAMBDA_RUNTIME_API set) says the process runs in AWS
	// Lambda, which freezes it as soon as a handler returns: work that
	// could run after an answer is done in the handler instead.
	Lambda bool
}

// Load reads the configuration: defaults, then the file named by SLUICE_CONFIG
// (if any), then the environment. getenv is os.Getenv in programs.
func Load(getenv func(string) string) (*Config, error) {
	var file []byte
	path := getenv("SLUICE_CONFIG")
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		file = b
	}
	cfg, err := Parse(file)
	if err != nil {
		return nil, err
	}
	cfg.Env = Env{
		DatabaseURL:   getenv("DATABASE_URL"),
		RedisURL:      getenv("REDIS_URL"),
		KeyPepper:     secret(getenv, "SLUICE_KEY_PEPPER", "sluice-key-pepper"),
		WebhookSecret: secret(getenv, "SLUICE_WEBHOOK_SECRET", "sluice-webhook-secret"),
		Addr:          getenv("SLUICE_ADDR"),
		ConfigPath:    path,
		WorkerName:    getenv("SLUICE_WORKER_NAME"),
		S3AccessKey:   secret(getenv, "SLUICE_S3_ACCESS_KEY", "sluice-s3-access-key"),
		S3SecretKey:   secret(getenv, "SLUICE_S3_SECRET_KEY", "sluice-s3-secret-key"),
	}
	cfg.Env.KeyPepperPrevious = secret(getenv, "SLUICE_KEY_PEPPER_PREVIOUS", "sluice-key-pepper-previous")
	cfg.Env.StripeSecretKey = secret(getenv, "STRIPE_SECRET_KEY", "stripe-secret-key")
	cfg.Env.StripeWebhookSecret = secret(getenv, "STRIPE_WEBHOOK_SECRET", "stripe-webhook-secret")
	cfg.Env.StripeWebhookSecretPrevious = secret(getenv, "STRIPE_WEBHOOK_SECRET_PREVIOUS", "stripe-webhook-secret-previous")
	cfg.Env.StripeAPIBase = getenv("STRIPE_API_BASE")
	cfg.Env.DatabaseReadURL = getenv("DATABASE_READ_URL")
	cfg.Env.Lambda = getenv("AWS_LAMBDA_RUNTIME_API") != ""
	cfg.Env.RollupToken = secret(getenv, "SLUICE_ROLLUP_TOKEN", "sluice-rollup-token")
	// Comma-separated overrides of server.trusted_proxies and
	// usage_rollup.scheduler_networks, so a deployment manifest
	// (openfaas.yml) can ship the right proxies without a config file.
	if v := getenv("SLUICE_TRUSTED_PROXIES"); v != "" {
		cfg.Server.TrustedProxies = strings.Split(v, ",")
		if _, err := parseProxies(cfg.Server.TrustedProxies); err != nil {
			return nil, fmt.Errorf("config: SLUICE_TRUSTED_PROXIES: %w", err)
		}
	}
	if v := getenv("SLUICE_SCHEDULER_NETWORKS"); v != "" {
		cfg.UsageRollup.SchedulerNetworks = strings.Split(v, ",")
		if _, err := parseProxies(cfg.UsageRollup.SchedulerNetworks); err != nil {
			return nil, fmt.Errorf("config: SLUICE_SCHEDULER_NETWORKS: %w", err)
		}
	}
	if cfg.Env.Addr == "" {
		cfg.Env.Addr = "127.0.0.1:8080"
	}
	return cfg, nil
}

// secret reads an env var, or the OpenFaaS secret file of that name: under
// SLUICE_SECRETS_DIR (set by `sluice gateway`, which runs functions as plain
// processes), by default OpenFaaS's /var/openfaas/secrets.
func secret(getenv func(string) string, env, file string) string {
	if v := getenv(env); v != "" {
		return v
	}
	dir := getenv("SLUICE_SECRETS_DIR")
	if dir == "" {
		dir = "/var/openfaas/secrets"
	}
	if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

// Parse builds a Config from the defaults overlaid with file (may be empty).
func Parse(file []byte) (*Config, error) {
	var cfg Config
	if err := decode(defaultYAML, &cfg); err != nil {
		return nil, fmt.Errorf("config: built-in defaults: %w", err)
	}
	var own Config // what the file itself sets, to tell its keys from the defaults'
	if len(file) > 0 {
		if err := decode(file, &cfg); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decode(file, &own); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	// A file that lists its own models drops the default prices of the
	// models it no longer serves; a price it sets for an unknown model stays
	// and fails validation.
	for name := range cfg.Pricing {
		if _, ok := cfg.Model(name); !ok && !cfg.isAdapter(name) {
			if _, set := own.Pricing[name]; !set {
				delete(cfg.Pricing, name)
			}
		}
	}
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

func decode(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)                                              // a misspelt key is an error, not a silent default
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) { // empty file: no change
		return err
	}
	return nil
}

func (c *Config) applyDefaults() {
	c.Storage.applyDefaults()
	c.UsageRollup.applyDefaults()
	c.Database.applyDefaults()
	if c.Inference.Engine == "" {
		c.Inference.Engine = "vllm"
	}
	for i := range c.Inference.Models {
		m := &c.Inference.Models[i]
		if m.Engine == "" {
			m.Engine = c.Inference.Engine
		}
		def(&m.SchedulingPolicy, SchedulingFCFS)
		if m.MaxBatchSize == 0 {
			m.MaxBatchSize = 16
		}
		if m.MaxModelLen == 0 {
			m.MaxModelLen = 4096
		}
		if m.Replicas == 0 {
			m.Replicas = 1
		}
		m.EngineInput.applyDefaults()
		for j, e := range m.Endpoints {
			m.Endpoints[j] = strings.TrimRight(e, "/")
		}
	}
	if c.Auth.Provider == "" {
		c.Auth.Provider = "sluice"
	}
	if c.Auth.Session.Timeout == 0 {
		c.Auth.Session.Timeout = 3600
	}
	applyIdentityDefaults(&c.Auth.Identity)
	s := &c.Server
	def(&s.MaxBodyBytes, 1<<20)
	def(&s.RequestTimeout, 5*time.Minute)
	def(&s.MaxMessages, 2048)
	def(&s.BytesPerTokenFloor, 32)
	def(&s.KeyCacheTTL, time.Second)
	j := &c.Jobs
	def(&j.ResultTTL, 24*time.Hour)
	def(&j.SyncRetention, min(15*time.Minute, j.ResultTTL))
	def(&j.AsyncDeadline, time.Hour)
	def(&j.MaxAttempts, 3)
	def(&j.MaxQueue, 100000)
	def(&j.Shards, 1)
	def(&j.Webhooks.MaxAttempts, 6)
	def(&j.Webhooks.Timeout, 10*time.Second)
	def(&j.Webhooks.Concurrency, 16)
	def(&j.Webhooks.UserConcurrency, min(2, j.Webhooks.Concurrency))
	def(&j.Webhooks.UserTime, time.Minute)
	// A job object must outlive the Redis record that points at it.
	def(&c.Storage.Jobs.Retention, j.ResultTTL+max(j.AsyncDeadline, s.RequestTimeout)+time.Hour)
	c.applyDispatchDefaults()
	c.applyPrefixCacheDefaults()
	c.applyFiltersDefaults()
	w := &c.Worker
	def(&w.Heartbeat, 5*time.Second)
	def(&w.ClaimIdle, 30*time.Second)
	def(&w.Retries, 3)
	def(&w.RetryBackoff, 200*time.Millisecond)
	def(&w.DrainTimeout, 30*time.Second)
	def(&w.UsageBatch, 500)
	def(&w.UsageFlush, 200*time.Millisecond)
	def(&w.UsageLinger, min(25*time.Millisecond, w.UsageFlush))
	c.applyTelemetryDefaults()
	c.applyAdmissionDefaults()
	c.applyBillingDefaults()
	c.applyRedisDefaults()
	c.applyBatchDefaults()
	c.applyResponsesDefaults()
	c.applyRoutingDefaults()
	c.applyAdapterDefaults()
}

func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

func (c *Config) validate() error {
	errs := []error{c.Storage.validate(), c.UsageRollup.validate(), c.Database.validate(), c.validateResponses()}
	if j := c.Jobs; j.ResultTTL <= 0 || j.SyncRetention <= 0 || j.SyncRetention > j.ResultTTL {
		errs = append(errs, errors.New("jobs: result_ttl and sync_retention must be positive, sync_retention at most result_ttl"))
	}
	if w := c.Jobs.Webhooks; w.Concurrency < 1 || w.UserConcurrency < 1 || w.UserConcurrency > w.Concurrency || w.UserTime <= 0 {
		errs = append(errs, errors.New("jobs.webhooks: concurrency and user_time must be positive, user_concurrency between 1 and concurrency"))
	}
	if c.Jobs.Shards < 1 || c.Jobs.Shards > 256 {
		errs = append(errs, fmt.Errorf("jobs.shards: %d is not between 1 and 256", c.Jobs.Shards))
	}
	if c.Worker.UsageLinger > c.Worker.UsageFlush {
		errs = append(errs, errors.New("worker.usage_linger: must not exceed worker.usage_flush"))
	}
	if len(c.Inference.Models) == 0 {
		errs = append(errs, errors.New("inference.models: at least one model is required"))
	}
	seen := map[string]bool{}
	for i, m := range c.Inference.Models {
		where := fmt.Sprintf("inference.models[%d]", i)
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", where))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q listed twice", where, m.Name))
		case strings.ContainsAny(m.Name, "{}:| \t\n"):
			// '|' separates the fields of admission's hold string.
			errs = append(errs, fmt.Errorf("%s.name: %q may not contain braces, colons, '|' or spaces", where, m.Name))
		}
		seen[m.Name] = true
		if m.MaxBatchSize < 1 {
			errs = append(errs, fmt.Errorf("%s.max_batch_size: must be positive", where))
		}
		if m.MaxModelLen < 16 {
			errs = append(errs, fmt.Errorf("%s.max_model_len: must be at least 16", where))
		}
		errs = append(errs, m.EngineInput.validate(where))
		switch m.Engine {
		case "vllm", "tgi", "ollama", "openai":
		default:
			errs = append(errs, fmt.Errorf("%s.engine: unknown engine %q", where, m.Engine))
		}
		for _, e := range m.Endpoints {
			if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
				errs = append(errs, fmt.Errorf("%s.endpoints: %q is not an http(s) URL", where, e))
			}
		}
	}
	for name, p := range c.Pricing {
		if !seen[name] && !c.isAdapter(name) {
			errs = append(errs, fmt.Errorf("pricing.%s: no such model in inference.models", name))
		}
		for field, v := range map[string]Micros{"input_tokens": p.InputTokens, "output_tokens": p.OutputTokens,
			"cached_response": p.CachedResponse, "per_request": p.PerRequest, "per_gpu_second": p.PerGPUSecond} {
			if v < 0 {
				errs = append(errs, fmt.Errorf("pricing.%s.%s: must not be negative", name, field))
			}
		}
		if c := p.CachedInputTokens; c != nil && (*c < 0 || *c > p.InputTokens) {
			errs = append(errs, fmt.Errorf("pricing.%s.cached_input_tokens: must be 0 to input_tokens (%s)", name, p.InputTokens))
		}
	}
	for name, t := range c.Tiers {
		if t.MonthlyCost.Kind == Unlimited {
			errs = append(errs, fmt.Errorf("tiers.%s.monthly_cost: 'unlimited' makes no sense for a price", name))
		}
		for field, q := range map[string]Quantity{"included_credits": t.IncludedCredits, "rate_limit": t.RateLimit} {
			if q.Kind == Fixed && q.Value%1e6 != 0 {
				errs = append(errs, fmt.Errorf("tiers.%s.%s: must be a whole number", name, field))
			}
		}
		if t.Priority != nil && (*t.Priority < 0 || *t.Priority >= BatchClass) {
			errs = append(errs, fmt.Errorf("tiers.%s.priority: must be 0 to %d (class %d is batch work's)", name, BatchClass-1, BatchClass))
		}
	}
	if _, ok := c.Tiers["free"]; !ok {
		errs = append(errs, errors.New("tiers.free: required (new users start there)"))
	}
	roles := map[string]bool{}
	for _, r := range c.Auth.RBAC.Roles {
		roles[r] = true
	}
	for r := range c.Auth.RBAC.Permissions {
		if !roles[r] {
			errs = append(errs, fmt.Errorf("auth.rbac.permissions.%s: role not listed in auth.rbac.roles", r))
		}
	}
	switch c.Auth.Provider {
	case "sluice", "keycloak", "oidc":
	default:
		errs = append(errs, fmt.Errorf("auth.provider: unknown provider %q", c.Auth.Provider))
	}
	errs = append(errs, c.validateAdmission(), c.validateAdapters())
	errs = append(errs, c.Auth.Identity.validate(c.Auth.RBAC.Roles))
	if c.Server.MaxBodyBytes < 1024 {
		errs = append(errs, errors.New("server.max_body_bytes: must be at least 1024"))
	}
	if _, err := parseProxies(c.Server.TrustedProxies); err != nil {
		errs = append(errs, errors.New("server.trusted_proxies: "+err.Error()))
	}
	errs = append(errs, c.validateDispatch(), c.validateFilters(), c.validateAliases())
	errs = append(errs, c.validateTelemetry()...)
	errs = append(errs, c.validateBilling(), c.validateRedis(), c.validateBatch(), c.validateServiceTiers())
	errs = append(errs, c.validateRouting(), c.validatePrefixCache())
	return errors.Join(errs...)
}

// Model returns the named model, or the model of the named LoRA adapter
// (its parent's settings under its name, Parent set).
func (c *Config) Model(name string) (*Model, bool) {
	for i := range c.Inference.Models {
		if c.Inference.Models[i].Name == name {
			return &c.Inference.Models[i], true
		}
	}
	return c.adapter(name)
}

// TierPriority is the queue priority class of a tier (0 served first);
// never BatchClass, which only batch lines and flex jobs use.
func (c *Config) TierPriority(tier string) int {
	if t, ok := c.Tiers[tier]; ok && t.Priority != nil {
		return min(max(*t.Priority, 0), BatchClass-1)
	}
	switch tier {
	case "enterprise":
		return 0
	case "pro":
		return 1
	}
	return 2
}

// Priorities is the number of priority classes (streams per model): the
// tiers' three interactive classes and BatchClass.
const Priorities = 4

// BatchClass is the queue class of batch lines and flex jobs: the last,
// served only from the slots interactive work leaves (batch.max_slot_share).
const BatchClass = Priorities - 1

// Permissions returns the permissions of a role.
func (c *Config) Permissions(role string) []string { return c.Auth.RBAC.Permissions[role] }

// ValidateEnv checks what a function needs: the stores and the key pepper
// (it verifies API keys).
func (e Env) ValidateEnv() error {
	var errs []error
	if len(e.KeyPepper) < 32 {
		errs = append(errs, errors.New("SLUICE_KEY_PEPPER: must be set to at least 32 bytes (e.g. `openssl rand -hex 32`)"))
	}
	return errors.Join(append(errs, e.ValidateWorkerEnv())...)
}

// ValidateWorkerEnv checks what the GPU worker needs: the stores. Not the
// key pepper: the worker verifies no credential.
func (e Env) ValidateWorkerEnv() error {
	var errs []error
	if e.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL: must be set"))
	}
	if e.RedisURL == "" {
		errs = append(errs, errors.New("REDIS_URL: must be set"))
	}
	return errors.Join(errs...)
}
