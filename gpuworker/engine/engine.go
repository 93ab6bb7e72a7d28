// Package engine talks to an OpenAI-compatible inference engine (vLLM first;
// TGI and Ollama through their OpenAI-compatible routes): one upstream request
// per job, streamed or not, with usage always captured.
package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Client calls one engine endpoint.
type Client struct {
	Base string
	Kind string // KindVLLM (default), KindTGI, KindOllama or KindOpenAI
	hc   *http.Client
}

// New returns a client for base (e.g. http://127.0.0.1:8000).
func New(base string, maxConns int) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns * 2,
		MaxIdleConnsPerHost: maxConns * 2,
		MaxConnsPerHost:     0,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{Base: base, hc: &http.Client{Transport: tr}}
}

// Result is a finished upstream call.
type Result struct {
	Body   []byte // the response body of a non-streamed call
	Usage  sluice.Usage
	Chunks int // chunks relayed to the client (any, so a retry would repeat output)
	// Produced counts the relayed chunks that carry generated output (text,
	// content, reasoning or tool-call deltas): a cut stream pays for these.
	// The first chunk of a chat stream carries only the role and is not a
	// token.
	Produced int
}

// Error is an upstream failure. Retryable ones (429, 5xx without output,
// connection errors) may be tried again, on this or another endpoint.
//
// Failures fall in classes the worker treats apart: a refused connection
// (Dial) means the request never reached the engine and the endpoint is
// down; an engine that answers 429 or 503 (Capacity) is busy, not broken;
// any other transport error (a reset, an early EOF, an SSE line over the
// scanner limit) belongs to this one request and says nothing of the
// endpoint, whose other requests run on.
type Error struct {
	Status    int           // 0 for a transport error
	Body      *sluice.Error // the engine's error answer, as its client sees it (KindUpstream)
	Retryable bool
	// Dial: the connection could not be made (refused, no route, dial
	// timeout); nothing reached the engine.
	Dial bool
	Err  error
}

// Capacity reports an engine that is busy (429, 503): trying again later
// costs the engine nothing, so it spends no attempt.
func (e *Error) Capacity() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// isDial reports whether err is a failure to connect: the request was never
// sent.
func isDial(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("engine: %v", e.Err)
	}
	return fmt.Sprintf("engine: %d %s", e.Status, e.Body.Message)
}

func (e *Error) Unwrap() error { return e.Err }

type headersKey struct{}

// WithHeaders returns ctx under which Do lets set add headers to the
// upstream request (the worker's trace context).
func WithHeaders(ctx context.Context, set func(context.Context, http.Header)) context.Context {
	return context.WithValue(ctx, headersKey{}, set)
}

// Do sends one request. For streams, onChunk gets each SSE data payload
// (usage chunk included) as it arrives; an error from onChunk aborts the call.
func (c *Client) Do(ctx context.Context, endpoint string, body []byte, stream bool, onChunk func([]byte) error) (*Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if h, ok := ctx.Value(headersKey{}).(func(context.Context, http.Header)); ok {
		h(ctx, req.Header)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &Error{Err: err, Retryable: ctx.Err() == nil, Dial: isDial(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		st := resp.StatusCode
		return nil, &Error{Status: st, Body: openai.UpstreamError(st, b),
			Retryable: st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable ||
				st == http.StatusBadGateway || st == http.StatusGatewayTimeout}
	}
	if !stream {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, &Error{Err: err, Retryable: ctx.Err() == nil}
		}
		var u struct {
			Usage *usageJSON `json:"usage"`
		}
		if err := json.Unmarshal(b, &u); err != nil {
			return nil, &Error{Err: fmt.Errorf("bad response body: %w", err)}
		}
		res := &Result{Body: b}
		if u.Usage != nil {
			res.Usage = u.Usage.toUsage()
		}
		return res, nil
	}
	if endpoint == sluice.EndpointResponses {
		return readResponsesStream(ctx, resp.Body, onChunk)
	}
	return readStream(ctx, resp.Body, onChunk)
}

type usageJSON struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	// The Responses API's names for the same counts.
	InputTokens        int64 `json:"input_tokens"`
	OutputTokens       int64 `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"input_tokens_details"`
}

func (u *usageJSON) toUsage() sluice.Usage {
	out := sluice.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if u.PromptTokensDetails != nil {
		out.CachedTokens = u.PromptTokensDetails.CachedTokens
	}
	if out.PromptTokens == 0 && out.CompletionTokens == 0 { // a /v1/responses usage
		out.PromptTokens, out.CompletionTokens = u.InputTokens, u.OutputTokens
		if u.TotalTokens == 0 {
			out.TotalTokens = u.InputTokens + u.OutputTokens
		}
		if u.InputTokensDetails != nil {
			out.CachedTokens = u.InputTokensDetails.CachedTokens
		}
	}
	return out
}

var usageMarker = []byte(`"usage":{`)

// outputMarkers are the fields of a stream chunk that carry generated output;
// a chunk counts as a token only when one of them is present and non-empty.
var outputMarkers = [][]byte{[]byte(`"content":"`), []byte(`"text":"`), []byte(`"reasoning_content":"`)}

// ProducesTokens reports whether a stream chunk carries generated output. A
// byte scan, not a parse: it runs on every chunk of the hot path.
func ProducesTokens(data []byte) bool {
	if bytes.Contains(data, []byte(`"tool_calls":[`)) {
		return true
	}
	for _, m := range outputMarkers {
		rest := data
		for {
			i := bytes.Index(rest, m)
			if i < 0 {
				break
			}
			rest = rest[i+len(m):]
			if len(rest) > 0 && rest[0] != '"' {
				return true
			}
		}
	}
	return false
}

func readStream(ctx context.Context, r io.Reader, onChunk func([]byte) error) (*Result, error) {
	res := &Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	done := false
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			done = true
			break
		}
		if bytes.HasPrefix(data, []byte(`{"error"`)) {
			var e struct {
				Error json.RawMessage `json:"error"`
			}
			json.Unmarshal(data, &e) //nolint:errcheck
			eb := openai.UpstreamError(http.StatusInternalServerError, data)
			return res, &Error{Status: http.StatusInternalServerError, Body: eb, Err: errors.New("error event mid-stream: " + eb.Message)}
		}
		if bytes.Contains(data, usageMarker) {
			var u struct {
				Usage *usageJSON `json:"usage"`
			}
			if json.Unmarshal(data, &u) == nil && u.Usage != nil {
				res.Usage = u.Usage.toUsage()
			}
		} else {
			res.Chunks++
			if ProducesTokens(data) {
				res.Produced++
			}
		}
		if err := onChunk(bytes.Clone(data)); err != nil {
			return res, &Error{Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return res, &Error{Err: err, Retryable: ctx.Err() == nil && res.Chunks == 0}
	}
	if !done {
		return res, &Error{Err: errors.New("stream ended without [DONE]"), Retryable: res.Chunks == 0 && ctx.Err() == nil}
	}
	return res, nil
}

// healthPath is each engine kind's liveness route: Ollama has no /health,
// and a hosted OpenAI-compatible server is alive when it lists its models.
var healthPath = map[string]string{KindOllama: "/api/version", KindOpenAI: "/v1/models"}

// Healthy reports whether the engine's health route answers 200 within timeout.
func (c *Client) Healthy(ctx context.Context, timeout time.Duration) bool {
	path := healthPath[c.Kind]
	if path == "" {
		path = "/health"
	}
	return c.status(ctx, path, timeout) == http.StatusOK
}
