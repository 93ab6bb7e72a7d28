package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-ai/sluice/shared/config"
)

// startTracing sets up the tracer provider: OTLP/HTTP (which Jaeger
// accepts) behind a batching processor, or the given exporter synchronously.
func (t *Telemetry) startTracing(ctx context.Context, cfg config.Tracing, exp sdktrace.SpanExporter) error {
	var proc sdktrace.SpanProcessor
	if exp != nil {
		proc = sdktrace.NewSimpleSpanProcessor(exp)
	} else {
		e, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint+"/v1/traces"))
		if err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		proc = sdktrace.NewBatchSpanProcessor(e)
	}
	res := resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(proc),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	t.tracer = t.tp.Tracer("github.com/sluice-ai/sluice")
	t.prop = propagation.TraceContext{}
	return nil
}

// Tracing reports whether spans are recorded.
func (t *Telemetry) Tracing() bool { return t != nil && t.tracer != nil }

// Span is a started span; End on a nil Span does nothing.
type Span struct{ s trace.Span }

// End ends the span, marking it failed when err is not nil.
func (s Span) End(err error) {
	if s.s == nil {
		return
	}
	if err != nil {
		s.s.RecordError(err)
		s.s.SetStatus(2, err.Error()) // codes.Error
	}
	s.s.End()
}

// SetAttr adds a string attribute.
func (s Span) SetAttr(k, v string) {
	if s.s != nil {
		s.s.SetAttributes(attribute.String(k, v))
	}
}

// SetName renames the span (once the route is known).
func (s Span) SetName(name string) {
	if s.s != nil {
		s.s.SetName(name)
	}
}

// TraceID is the span's trace id in hex, "" when not recording.
func (s Span) TraceID() string {
	if s.s == nil || !s.s.SpanContext().IsValid() {
		return ""
	}
	return s.s.SpanContext().TraceID().String()
}

// Start starts a span as a child of ctx's; with tracing off it returns ctx
// unchanged and an empty Span, at no cost.
func (t *Telemetry) Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, Span) {
	if !t.Tracing() {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	return ctx, Span{s}
}

// Record adds a finished span covering [start, end] under ctx's span: the
// queue wait, whose start and end the worker learns after the fact.
func (t *Telemetry) Record(ctx context.Context, name string, start, end time.Time, attrs ...attribute.KeyValue) {
	if !t.Tracing() {
		return
	}
	_, s := t.tracer.Start(ctx, name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	s.End(trace.WithTimestamp(end))
}

// ServerSpan starts the span of an incoming HTTP request: a child of the
// span in its context (the gateway's, in one process) or else continuing
// the caller's trace when it sent a traceparent header.
func (t *Telemetry) ServerSpan(r *http.Request, name string) (context.Context, Span) {
	if !t.Tracing() {
		return r.Context(), Span{}
	}
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() { // the outermost span continues the caller's trace
		ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	return t.Start(ctx, name, trace.SpanKindServer, attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path))
}

// Inject returns ctx's span as a W3C traceparent, to carry inside a job;
// "" with tracing off.
func (t *Telemetry) Inject(ctx context.Context) string {
	if !t.Tracing() {
		return ""
	}
	c := propagation.MapCarrier{}
	t.prop.Inject(ctx, c)
	return c["traceparent"]
}

// Extract returns ctx under the span a job's traceparent names.
func (t *Telemetry) Extract(ctx context.Context, traceparent string) context.Context {
	if !t.Tracing() || traceparent == "" {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// InjectHTTP adds ctx's traceparent to an outgoing request's headers, so an
// engine that traces (vLLM does, with OTLP configured) joins the trace.
func (t *Telemetry) InjectHTTP(ctx context.Context, h http.Header) {
	if !t.Tracing() {
		return
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// Kinds re-exported so callers need not import the trace package.
const (
	KindInternal = trace.SpanKindInternal
	KindServer   = trace.SpanKindServer
	KindClient   = trace.SpanKindClient
	KindConsumer = trace.SpanKindConsumer
)

// Attr is a string span attribute.
func Attr(k, v string) attribute.KeyValue { return attribute.String(k, v) }
