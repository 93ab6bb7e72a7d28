package telemetry

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// Latency buckets, in seconds: from a cache hit to a long generation.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// metricSet is every metric Sluice observes directly. Labels are bounded:
// function, route pattern, model (from the configuration), status code,
// priority, endpoint (from the configuration) — never a user or a job.
type metricSet struct {
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	httpInFlight  *prometheus.GaugeVec
	inferRequests *prometheus.CounterVec
	inferDuration *prometheus.HistogramVec
	ttft          *prometheus.HistogramVec

	queueWait     *prometheus.HistogramVec
	jobsStarted   *prometheus.CounterVec
	jobsCompleted *prometheus.CounterVec
	jobsReclaimed *prometheus.CounterVec
	engineDur     *prometheus.HistogramVec
	engineRetries *prometheus.CounterVec
	tokens        *prometheus.CounterVec
	tokensPerSec  *prometheus.HistogramVec
	billed        *prometheus.CounterVec
	requestCost   *prometheus.HistogramVec
	epUp          *prometheus.GaugeVec
	epInFlight    *prometheus.GaugeVec
	epCapacity    *prometheus.GaugeVec
	webhooks      *prometheus.CounterVec
	usageRows     *prometheus.CounterVec
	usageErrors   prometheus.Counter
	promptSource  *prometheus.CounterVec
	epTakeOuts    *prometheus.CounterVec
	hooksDeferred *prometheus.CounterVec

	settleExcess *prometheus.CounterVec
	settleDebt   *prometheus.CounterVec
	settleUnheld *prometheus.CounterVec

	rollupLast    prometheus.Gauge
	rollupRuns    *prometheus.CounterVec
	reconMismatch prometheus.Gauge
	reconLastRun  prometheus.Gauge

	fallbacks *prometheus.CounterVec
}

func newMetricSet(reg prometheus.Registerer) *metricSet {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(h)
		return h
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	scalar := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	m := &metricSet{
		httpRequests: counter("sluice_http_requests_total", "HTTP requests served, by function, route pattern and status code.", "function", "route", "code"),
		httpDuration: hist("sluice_http_request_duration_seconds", "Time to serve an HTTP request, by function and route pattern.", latencyBuckets, "function", "route"),
		httpInFlight: gauge("sluice_http_requests_in_flight", "HTTP requests being served, by function.", "function"),
		inferRequests: counter("sluice_inference_requests_total",
			"Inference requests (chat/completions and async jobs), by model and the status code answered.", "model", "code"),
		inferDuration: hist("sluice_inference_request_duration_seconds",
			"End-to-end time of a synchronous inference request as the client sees it, by model and whether it streamed.", latencyBuckets, "model", "stream"),
		ttft: hist("sluice_time_to_first_token_seconds", "Time from a streaming request's arrival to its first chunk sent, by model.",
			latencyBuckets, "model"),

		queueWait: hist("sluice_queue_wait_seconds", "Time a job waited in its queue before a worker started it, by model and priority.",
			latencyBuckets, "model", "priority"),
		jobsStarted: counter("sluice_jobs_started_total",
			"Claimed queue entries by what the start step decided: run, expired, cancelled, dead, interrupted, gone, done.", "model", "outcome"),
		jobsCompleted: counter("sluice_jobs_completed_total", "Jobs a worker ran to a final state, by model and status.", "model", "status"),
		jobsReclaimed: counter("sluice_jobs_reclaimed_total", "Queue entries taken over from a worker that stopped heartbeating, by model.", "model"),
		engineDur:     hist("sluice_engine_request_duration_seconds", "Time of a job's upstream engine call(s), by model.", latencyBuckets, "model"),
		engineRetries: counter("sluice_engine_retries_total", "Upstream calls retried after a retryable engine error, by model.", "model"),
		tokens:        counter("sluice_tokens_total", "Tokens processed, by model and type (prompt, completion).", "model", "type"),
		tokensPerSec: hist("sluice_output_tokens_per_second", "Completion tokens per second of engine time, per job, by model.",
			[]float64{1, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560}, "model"),
		billed: counter("sluice_billed_dollars_total", "Value of processed tokens at list price (configured pricing), in dollars, by model.", "model"),
		requestCost: hist("sluice_request_cost_dollars", "Price of one job's tokens at list price, in dollars, by model.",
			[]float64{1e-6, 1e-5, 1e-4, 5e-4, .001, .005, .01, .05, .1, .5, 1}, "model"),
		epUp:       gauge("sluice_engine_endpoint_up", "1 when an engine endpoint passes its health check, as this worker sees it.", "model", "endpoint"),
		epInFlight: gauge("sluice_engine_endpoint_in_flight", "Jobs this worker runs on an engine endpoint.", "model", "endpoint"),
		epCapacity: gauge("sluice_engine_endpoint_capacity", "Batch slots of an engine endpoint (max_batch_size).", "model", "endpoint"),
		webhooks:   counter("sluice_webhook_deliveries_total", "Job webhook deliveries by result: delivered, or failed after the last attempt.", "result"),
		usageRows: counter("sluice_usage_rows_total",
			"Usage events moved from Redis to PostgreSQL, by result: written (new rows; redelivered ones are skipped), or parked (refused by the database).", "result"),
		usageErrors: func() prometheus.Counter {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_usage_write_errors_total",
				Help: "Failed attempts to write a batch of usage rows (retried; left pending in Redis)."})
			reg.MustRegister(c)
			return c
		}(),

		settleExcess: counter("sluice_settlement_excess_tokens_total",
			"Tokens the engine counted past their job's hold (charged all the same), by model. Above 0, a request shape escapes the admission bound.", "model"),
		settleDebt: counter("sluice_settlement_debt_micros_total",
			"Micro-dollars settled jobs were charged that no funds covered (the balance went below zero as an audited debt), by model.", "model"),
		settleUnheld: counter("sluice_settlement_unheld_total",
			"Jobs settled without their hold (it lapsed or was lost), charged from their recorded usage at the hold's prices, by model.", "model"),
		promptSource: counter("sluice_usage_prompt_source_total",
			"Jobs billed by where their prompt token count came from: engine (its usage), tokenize (the engine's /tokenize, for a cut or failed job), hold (the held prompt bound), none.", "source"),
		epTakeOuts: counter("sluice_engine_endpoint_takeouts_total",
			"Times an engine endpoint was taken out of rotation, by model, endpoint and reason: health (failed polls) or refused (a refused connection).", "model", "endpoint", "reason"),
		hooksDeferred: counter("sluice_webhook_deferred_total",
			"Webhook deliveries put off, by reason: retry (a failed attempt waits its backoff without a slot) or user_budget (its user's delivery budget is spent).", "reason"),

		rollupLast: scalar("sluice_rollup_last_success_timestamp_seconds",
			"Unix time of the last successful usage rollup (set by the usage-rollup job; 0 until it first runs)."),
		rollupRuns:    counter("sluice_rollup_runs_total", "Usage rollup runs, by result (ok, error).", "result"),
		reconMismatch: scalar("sluice_reconciliation_mismatches", "Mismatches the last billing reconciliation found (set by the reconciliation job)."),
		reconLastRun:  scalar("sluice_reconciliation_last_run_timestamp_seconds", "Unix time of the last billing reconciliation run."),

		fallbacks: counter("sluice_fallbacks_total",
			"Requests submit sent to a fallback model because their model had no healthy endpoint or a full queue, by model and fallback (inference.models[].fallbacks).", "model", "fallback"),
	}
	for _, r := range []string{"delivered", "failed"} {
		m.webhooks.WithLabelValues(r)
	}
	for _, r := range []string{"engine", "tokenize", "hold", "none"} {
		m.promptSource.WithLabelValues(r)
	}
	for _, r := range []string{"retry", "user_budget"} {
		m.hooksDeferred.WithLabelValues(r)
	}
	for _, r := range []string{"written", "parked"} {
		m.usageRows.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.rollupRuns.WithLabelValues(r)
	}
	return m
}

// InitModels creates the per-model counters at zero, so rate() and
// increase() see their first event and dashboards show a flat line rather
// than nothing.
func (t *Telemetry) InitModels(models []string) {
	if t == nil || t.m == nil {
		return
	}
	for _, m := range models {
		t.m.jobsReclaimed.WithLabelValues(m)
		t.m.engineRetries.WithLabelValues(m)
		t.m.billed.WithLabelValues(m)
		t.m.settleExcess.WithLabelValues(m)
		t.m.settleDebt.WithLabelValues(m)
		t.m.settleUnheld.WithLabelValues(m)
		for _, typ := range []string{"prompt", "completion"} {
			t.m.tokens.WithLabelValues(m, typ)
		}
		for _, st := range []sluice.JobStatus{sluice.JobSucceeded, sluice.JobFailed, sluice.JobCancelled} {
			t.m.jobsCompleted.WithLabelValues(m, string(st))
		}
	}
}

// ObserveHTTP records one served request. route is the mux pattern that
// matched ("" when none did).
func (t *Telemetry) ObserveHTTP(function, route string, code int, d time.Duration) {
	if t == nil || t.m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	t.m.httpRequests.WithLabelValues(function, route, strconv.Itoa(code)).Inc()
	t.m.httpDuration.WithLabelValues(function, route).Observe(d.Seconds())
}

// InFlight counts a request in (+1) or out (-1) of a function.
func (t *Telemetry) InFlight(function string, delta float64) {
	if t == nil || t.m == nil {
		return
	}
	t.m.httpInFlight.WithLabelValues(function).Add(delta)
}

// ObserveInference records an inference request's outcome for its model;
// sync requests also record their end-to-end latency.
func (t *Telemetry) ObserveInference(model string, code int, d time.Duration, sync, stream bool) {
	if t == nil || t.m == nil {
		return
	}
	t.m.inferRequests.WithLabelValues(model, strconv.Itoa(code)).Inc()
	if sync {
		t.m.inferDuration.WithLabelValues(model, strconv.FormatBool(stream)).Observe(d.Seconds())
	}
}

// FirstToken records a streaming request's time to its first chunk.
func (t *Telemetry) FirstToken(model string, d time.Duration) {
	if t == nil || t.m == nil {
		return
	}
	t.m.ttft.WithLabelValues(model).Observe(d.Seconds())
}

// JobStarted records what the start step decided for a claimed entry and,
// for a job that runs, how long it waited.
func (t *Telemetry) JobStarted(model string, priority int, outcome string, wait time.Duration) {
	if t == nil || t.m == nil {
		return
	}
	t.m.jobsStarted.WithLabelValues(model, outcome).Inc()
	if outcome == "run" && wait >= 0 {
		t.m.queueWait.WithLabelValues(model, strconv.Itoa(priority)).Observe(wait.Seconds())
	}
}

// JobsReclaimed counts entries taken over from a dead worker.
func (t *Telemetry) JobsReclaimed(model string, n int) {
	if t == nil || t.m == nil || n == 0 {
		return
	}
	t.m.jobsReclaimed.WithLabelValues(model).Add(float64(n))
}

// EngineRetry counts one retried upstream call.
func (t *Telemetry) EngineRetry(model string) {
	if t == nil || t.m == nil {
		return
	}
	t.m.engineRetries.WithLabelValues(model).Inc()
}

// JobDone records a job the worker ran: its status, engine time, tokens and
// their list price in micro-dollars (exact integers until this point).
func (t *Telemetry) JobDone(model string, status sluice.JobStatus, engine time.Duration, u sluice.Usage, costMicros int64) {
	if t == nil || t.m == nil {
		return
	}
	t.m.jobsCompleted.WithLabelValues(model, string(status)).Inc()
	t.m.engineDur.WithLabelValues(model).Observe(engine.Seconds())
	t.m.tokens.WithLabelValues(model, "prompt").Add(float64(u.PromptTokens))
	t.m.tokens.WithLabelValues(model, "completion").Add(float64(u.CompletionTokens))
	if u.CompletionTokens > 0 && engine > 0 {
		t.m.tokensPerSec.WithLabelValues(model).Observe(float64(u.CompletionTokens) / engine.Seconds())
	}
	dollars := float64(costMicros) / 1e6
	t.m.billed.WithLabelValues(model).Add(dollars)
	t.m.requestCost.WithLabelValues(model).Observe(dollars)
}

// Endpoint sets an engine endpoint's health and load gauges.
func (t *Telemetry) Endpoint(model, endpoint string, healthy bool, inFlight, capacity int64) {
	if t == nil || t.m == nil {
		return
	}
	up := 0.0
	if healthy {
		up = 1
	}
	t.m.epUp.WithLabelValues(model, endpoint).Set(up)
	t.m.epInFlight.WithLabelValues(model, endpoint).Set(float64(inFlight))
	t.m.epCapacity.WithLabelValues(model, endpoint).Set(float64(capacity))
	for _, r := range []string{"health", "refused"} { // exported at 0 before the first take-out
		t.m.epTakeOuts.WithLabelValues(model, endpoint, r)
	}
}

// Webhook records a delivery that succeeded or was given up.
func (t *Telemetry) Webhook(delivered bool) {
	if t == nil || t.m == nil {
		return
	}
	r := "failed"
	if delivered {
		r = "delivered"
	}
	t.m.webhooks.WithLabelValues(r).Inc()
}

// Settled counts one settlement past its hold: tokens past the bounds, debt
// no funds covered, a job settled without its hold (admission.Observer).
func (t *Telemetry) Settled(model string, excessTokens, debtMicros int64, unheld bool) {
	if t == nil || t.m == nil {
		return
	}
	if excessTokens > 0 {
		t.m.settleExcess.WithLabelValues(model).Add(float64(excessTokens))
	}
	if debtMicros > 0 {
		t.m.settleDebt.WithLabelValues(model).Add(float64(debtMicros))
	}
	if unheld {
		t.m.settleUnheld.WithLabelValues(model).Inc()
	}
}

// PromptSource counts a billed job by where its prompt token count came
// from (sluice.PromptSource*).
func (t *Telemetry) PromptSource(source string) {
	if t == nil || t.m == nil {
		return
	}
	t.m.promptSource.WithLabelValues(source).Inc()
}

// EndpointTakenOut counts an endpoint taken out of rotation, by reason
// (health or refused).
func (t *Telemetry) EndpointTakenOut(model, endpoint, reason string) {
	if t == nil || t.m == nil {
		return
	}
	t.m.epTakeOuts.WithLabelValues(model, endpoint, reason).Inc()
}

// WebhookDeferred counts a delivery put off, by reason (retry or user_budget).
func (t *Telemetry) WebhookDeferred(reason string) {
	if t == nil || t.m == nil {
		return
	}
	t.m.hooksDeferred.WithLabelValues(reason).Inc()
}

// UsageRows counts usage events written or parked.
func (t *Telemetry) UsageRows(result string, n int) {
	if t == nil || t.m == nil || n == 0 {
		return
	}
	t.m.usageRows.WithLabelValues(result).Add(float64(n))
}

// UsageWriteError counts a failed batch write.
func (t *Telemetry) UsageWriteError() {
	if t == nil || t.m == nil {
		return
	}
	t.m.usageErrors.Inc()
}

// RollupRun records a usage rollup run (for the usage-rollup job).
func (t *Telemetry) RollupRun(ok bool, at time.Time) {
	if t == nil || t.m == nil {
		return
	}
	if ok {
		t.m.rollupRuns.WithLabelValues("ok").Inc()
		t.m.rollupLast.Set(float64(at.Unix()))
		return
	}
	t.m.rollupRuns.WithLabelValues("error").Inc()
}

// Reconciled records a billing reconciliation run and the mismatches it
// found (for the reconciliation job).
func (t *Telemetry) Reconciled(mismatches int, at time.Time) {
	if t == nil || t.m == nil {
		return
	}
	t.m.reconMismatch.Set(float64(mismatches))
	t.m.reconLastRun.Set(float64(at.Unix()))
}

// Fallback counts a request that model could not take and fallback served.
func (t *Telemetry) Fallback(model, fallback string) {
	if t == nil || t.m == nil {
		return
	}
	t.m.fallbacks.WithLabelValues(model, fallback).Inc()
}
