package engine

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Kinds of engine. Each speaks the OpenAI API; they differ in what their
// /metrics reports and in how readiness is probed.
const (
	KindVLLM   = "vllm"
	KindTGI    = "tgi"
	KindOllama = "ollama"
	KindOpenAI = "openai"
)

// Load is an engine's own view of its batch, read from its /metrics.
// Fields the engine does not report are -1, so callers can tell "none" from
// "zero".
type Load struct {
	Running int     // requests in the batch
	Waiting int     // requests queued inside the engine
	KVCache float64 // KV-cache use, 0..1
}

// Unknown is the Load of an engine that reports nothing.
var Unknown = Load{Running: -1, Waiting: -1, KVCache: -1}

// metricNames maps an engine kind to the series that give running, waiting
// and KV use, in order of preference. vLLM renamed gpu_cache_usage_perc to
// kv_cache_usage_perc (v0.10); both are read. Ollama and plain OpenAI
// endpoints expose no such series.
var metricNames = map[string][3][]string{
	KindVLLM: {{"vllm:num_requests_running"}, {"vllm:num_requests_waiting"},
		{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}},
	KindTGI: {{"tgi_batch_current_size"}, {"tgi_queue_size"}, nil},
}

// HasMetrics reports whether an engine kind exposes load metrics at all.
func HasMetrics(kind string) bool { _, ok := metricNames[kindOrDefault(kind)]; return ok }

func kindOrDefault(kind string) string {
	if kind == "" {
		return KindVLLM
	}
	return kind
}

// Metrics scrapes the engine's Prometheus /metrics. An engine kind without
// load metrics returns Unknown and no error.
func (c *Client) Metrics(ctx context.Context, kind string, timeout time.Duration) (Load, error) {
	names, ok := metricNames[kindOrDefault(kind)]
	if !ok {
		return Unknown, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/metrics", nil)
	if err != nil {
		return Unknown, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return Unknown, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		return Unknown, fmt.Errorf("engine: /metrics answered %d", resp.StatusCode)
	}
	vals := ParseMetrics(io.LimitReader(resp.Body, 4<<20))
	pick := func(ns []string) float64 {
		for _, n := range ns {
			if v, ok := vals[n]; ok {
				return v
			}
		}
		return -1
	}
	return Load{Running: int(pick(names[0])), Waiting: int(pick(names[1])), KVCache: pick(names[2])}, nil
}

// ParseMetrics reads Prometheus text exposition and returns, per metric
// name, the sum over its label sets (an engine serving several models
// reports one series per model; its batch is shared). Malformed lines are
// skipped: a scrape must never fail the worker.
func ParseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, rest := line, []byte(nil)
		if i := bytes.IndexAny(line, "{ \t"); i >= 0 {
			name, rest = line[:i], line[i:]
		} else {
			continue
		}
		if len(rest) > 0 && rest[0] == '{' {
			// Label values may hold '}' inside quotes.
			j, inQuote := 1, false
			for ; j < len(rest); j++ {
				switch {
				case rest[j] == '\\' && inQuote:
					j++
				case rest[j] == '"':
					inQuote = !inQuote
				case rest[j] == '}' && !inQuote:
					goto closed
				}
			}
			continue // unterminated labels
		closed:
			rest = rest[j+1:]
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil {
			continue
		}
		out[string(name)] += v
	}
	return out
}

// Ready reports whether the engine has loaded its weights: vLLM answers
// /health/ready 503 while it starts; engines without the route (404) are
// ready once /health answers.
func (c *Client) Ready(ctx context.Context, timeout time.Duration) bool {
	st := c.status(ctx, "/health/ready", timeout)
	return st == http.StatusOK || st == http.StatusNotFound
}

// status GETs path and returns the status code, 0 when there was no answer.
func (c *Client) status(ctx context.Context, path string, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return 0
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode
}
