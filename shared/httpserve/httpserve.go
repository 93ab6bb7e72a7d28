// Package httpserve holds the HTTP plumbing every function shares: request
// ids, one log line per request, metrics and a span per request, panic
// recovery, and a server that shuts down gracefully.
package httpserve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

type ctxKey struct{}

// info is what a handler tells the request's log line and metrics.
type info struct {
	id     string
	start  time.Time
	user   string
	model  string
	infer  bool // an inference request (chat, completion, async job)
	sync   bool // answered when the job ended (not an async job id)
	stream bool
	// inner is set when another Middleware inside this one (a function
	// behind the local gateway) logs the request: one line per request.
	inner bool
}

// RequestID returns the request id stored by Middleware.
func RequestID(ctx context.Context) string {
	if in, ok := ctx.Value(ctxKey{}).(*info); ok {
		return in.id
	}
	return ""
}

// Since is the time since Middleware received the request.
func Since(ctx context.Context) time.Duration {
	if in, ok := ctx.Value(ctxKey{}).(*info); ok {
		return time.Since(in.start)
	}
	return 0
}

// SetUser records the authenticated user for the request's log line.
func SetUser(ctx context.Context, userID string) {
	if in, ok := ctx.Value(ctxKey{}).(*info); ok {
		in.user = userID
	}
}

// SetInference marks the request as an inference request for model, so its
// outcome and latency are counted per model; sync is false for async jobs.
func SetInference(ctx context.Context, model string, sync, stream bool) {
	if in, ok := ctx.Value(ctxKey{}).(*info); ok {
		in.model, in.infer, in.sync, in.stream = model, true, sync, stream
	}
}

// Middleware adds a request id, recovers panics as OpenAI-shaped 500s,
// records the request's metrics and span (when the telemetry in its context
// has them on) and logs one line per request: request id, job id, user id
// (never a credential), model, status, latency, trace id and the client
// address (server.trusted_proxies applied; ClientAddr reads it).
func Middleware(log *slog.Logger, name string, next http.Handler, opts ...Option) http.Handler {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := ForwardedClient(r, o.trusted)
		id := r.Header.Get("X-Request-Id")
		outer, _ := r.Context().Value(ctxKey{}).(*info)
		if outer != nil { // behind another Middleware: its id, and this one logs
			outer.inner = true
			id = outer.id
		}
		if len(id) == 0 || len(id) > 64 {
			b := make([]byte, 8)
			rand.Read(b) //nolint:errcheck
			id = "req_" + hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		in := &info{id: id, start: time.Now()}
		tel := telemetry.From(r.Context())
		ctx, span := tel.ServerSpan(r, name+" "+r.Method)
		r = r.WithContext(withClient(context.WithValue(ctx, ctxKey{}, in), client))
		rec := &recorder{ResponseWriter: w, status: 200}
		tel.InFlight(name, 1)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				openai.WriteError(rec, r, log, fmt.Errorf("panic: %v", p))
			}
			latency := time.Since(in.start)
			tel.InFlight(name, -1)
			tel.ObserveHTTP(name, r.Pattern, rec.status, latency)
			if in.infer {
				tel.ObserveInference(in.model, rec.status, latency, in.sync, in.stream)
			}
			jobID := rec.Header().Get("Sluice-Job-Id")
			if tel.Tracing() {
				if r.Pattern != "" {
					span.SetName(name + " " + r.Pattern)
				}
				span.SetAttr("http.response.status_code", strconv.Itoa(rec.status))
				span.SetAttr("sluice.job_id", jobID)
				span.End(nil)
			}
			if in.inner {
				return // the function inside logged it
			}
			log.InfoContext(r.Context(), "request", slog.String("function", name),
				slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("client", client),
				slog.Int("status", rec.status), slog.Duration("latency", latency),
				slog.String("job_id", jobID), slog.String("user_id", in.user), slog.String("model", in.model),
				slog.String("trace_id", span.TraceID()))
		}()
		next.ServeHTTP(rec, r)
	})
}

// Option configures Middleware.
type Option func(*options)

type options struct{ trusted []netip.Prefix }

// TrustProxies names the proxies whose X-Forwarded-For is believed
// (server.trusted_proxies); see ForwardedClient.
func TrustProxies(p []netip.Prefix) Option { return func(o *options) { o.trusted = p } }

type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *recorder) WriteHeader(s int) {
	if !r.wrote {
		r.status, r.wrote = s, true
	}
	r.ResponseWriter.WriteHeader(s)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Serve runs h on ln until ctx ends, then shuts down, waiting up to grace for
// in-flight requests.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if e := <-errc; e != nil && !errors.Is(e, http.ErrServerClosed) {
		return e
	}
	return err
}
