// Package enginetest puts test proxies between the worker and an engine (the
// simulator): what a real vLLM server does that the simulator does not.
package enginetest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy forwards requests to an engine, except that it resets the
// connection (TCP RST, no response) of every inference request (a POST under
// /v1/) whose body carries Marker: what a request that crashes or drops
// vLLM's connection looks like to the worker, while every other request on
// the same endpoint is served (/tokenize and /health included).
type FaultProxy struct {
	// URL is the proxy's base, to configure as the model's endpoint.
	URL string
	// Marker is the byte string that marks a poison request.
	Marker string
	// ResetAfter is how long a poison request is held (its prefill) before
	// its connection is reset.
	ResetAfter time.Duration

	hits   atomic.Int64
	served atomic.Int64
}

// Hits is how many poison requests reached the proxy (and were reset).
func (f *FaultProxy) Hits() int64 { return f.hits.Load() }

// Served is how many other POST requests (inference, /tokenize) it forwarded.
func (f *FaultProxy) Served() int64 { return f.served.Load() }

// StartFaultProxy starts a fault proxy in front of target (an engine's base
// URL), closed when the test ends.
func StartFaultProxy(tb testing.TB, target, marker string) *FaultProxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &FaultProxy{URL: "http://" + ln.Addr().String(), Marker: marker}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // relay each SSE chunk as it comes
	// An engine that died answers nothing: the proxy drops the connection
	// too, rather than answer 502 as a gateway would.
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { reset(w) }
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.Marker != "" && strings.HasPrefix(r.URL.Path, "/v1/") && bytes.Contains(body, []byte(f.Marker)) {
			f.hits.Add(1)
			if f.ResetAfter > 0 {
				time.Sleep(f.ResetAfter)
			}
			reset(w)
			return
		}
		if r.Method == http.MethodPost {
			f.served.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	tb.Cleanup(func() { srv.Close() })
	return f
}

// reset closes the request's connection with a TCP RST: no status line, no
// body, as when the engine process dies or drops the socket.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("enginetest: response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) //nolint:errcheck // 0: close sends RST
	}
	conn.Close()
}
