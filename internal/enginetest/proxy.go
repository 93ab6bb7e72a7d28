package enginetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Usage is the engine's own count for one request, from its response.
type Usage struct{ Prompt, Completion int64 }

// Exchange is one request the proxy forwarded.
type Exchange struct {
	Endpoint  string
	Raw       []byte   // the body as the worker sent it
	Parsed    any      // Raw as vLLM's Python server parses it
	Rendered  Rendered // what the template makes of Parsed
	RenderErr error
	Usage     *Usage // the engine's usage, nil until (or unless) it answered with one
	ID        string // the response's id
}

// Proxy is a recording reverse proxy in front of an engine.
type Proxy struct {
	URL    string
	indent int
	mu     sync.Mutex
	log    []*Exchange
}

// NewProxy starts a proxy to the engine at target for the test's life;
// indent is the template's tool JSON indent.
func NewProxy(tb testing.TB, target string, indent int) *Proxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{indent: indent}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ModifyResponse = func(resp *http.Response) error {
		ex, _ := resp.Request.Context().Value(exchangeKey{}).(*Exchange)
		if ex == nil || resp.StatusCode != http.StatusOK {
			return nil
		}
		resp.Body = &usageReader{r: resp.Body, ex: ex, mu: &p.mu}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rp.ServeHTTP(w, r)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		ex := &Exchange{Endpoint: r.URL.Path, Raw: raw}
		ex.Parsed, ex.RenderErr = DecodePython(raw)
		if ex.RenderErr == nil {
			ex.Rendered, ex.RenderErr = Render(r.URL.Path, ex.Parsed, p.indent)
		}
		p.mu.Lock()
		p.log = append(p.log, ex)
		p.mu.Unlock()
		rp.ServeHTTP(w, r.WithContext(contextWith(r, ex)))
	}))
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Exchanges returns what was forwarded so far.
func (p *Proxy) Exchanges() []*Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Exchange(nil), p.log...)
}

// Find returns the exchanges whose raw body contains marker.
func (p *Proxy) Find(marker string) []*Exchange {
	var out []*Exchange
	for _, ex := range p.Exchanges() {
		if bytes.Contains(ex.Raw, []byte(marker)) {
			out = append(out, ex)
		}
	}
	return out
}

// UsageOf returns an exchange's usage under the proxy's lock.
func (p *Proxy) UsageOf(ex *Exchange) *Usage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ex.Usage
}

// usageReader passes a response through, noting the usage (and id) it
// carries, whole or as SSE chunks.
type usageReader struct {
	r   io.ReadCloser
	ex  *Exchange
	mu  *sync.Mutex
	buf bytes.Buffer
}

func (u *usageReader) Read(b []byte) (int, error) {
	n, err := u.r.Read(b)
	u.buf.Write(b[:n])
	if err == io.EOF {
		u.scan()
	}
	return n, err
}

func (u *usageReader) Close() error {
	u.scan()
	return u.r.Close()
}

func (u *usageReader) scan() {
	data := u.buf.Bytes()
	if len(data) == 0 {
		return
	}
	u.buf.Reset()
	payloads := [][]byte{data}
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		payloads = nil
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok && line != "[DONE]" {
				payloads = append(payloads, []byte(line))
			}
		}
	}
	for _, pl := range payloads {
		var v struct {
			ID    string `json:"id"`
			Usage *struct {
				Prompt     int64 `json:"prompt_tokens"`
				Completion int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		if json.Unmarshal(pl, &v) != nil {
			continue
		}
		u.mu.Lock()
		if v.ID != "" {
			u.ex.ID = v.ID
		}
		if v.Usage != nil {
			u.ex.Usage = &Usage{Prompt: v.Usage.Prompt, Completion: v.Usage.Completion}
		}
		u.mu.Unlock()
	}
}

type exchangeKey struct{}

func contextWith(r *http.Request, ex *Exchange) context.Context {
	return context.WithValue(r.Context(), exchangeKey{}, ex)
}
