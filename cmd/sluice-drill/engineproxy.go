package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// The money drill's engine proxy sits between the workers and the
// simulator. It does three things:
//
//   - It makes the simulator see a request as vLLM would. vLLM's Python
//     server reads exact-case JSON keys (the last duplicate wins) and ignores
//     keys it does not know, such as "MESSAGES" or "N"; the simulator is Go
//     and matches keys without regard to case. The proxy therefore forwards
//     only the all-lower-case top-level keys. vLLM's chat template renders
//     `tools`, `response_format` and assistant `tool_calls` into the prompt;
//     the simulator's tokenizer counts only message text. The proxy
//     therefore adds that material, as text, in a leading system message,
//     so the simulator counts it as prompt tokens.
//   - It records, per drill tag (a "drill-tag:..." marker the drill writes
//     into each request's first message or prompt), every engine attempt:
//     the usage the engine reported (the non-stream body's usage, or the
//     stream's usage chunk), or, for a stream that was cut before its usage
//     chunk, the prompt the engine processed (the simulator's /tokenize)
//     and the completion chunks it sent.
//   - It resets the connection (TCP RST, nothing forwarded) of any request
//     that carries the poison marker, as a request that crashes or drops
//     vLLM's connection would; its attempt is recorded with the prompt the
//     engine would have processed.

// poisonMarker in a request body makes the proxy reset its connection.
const poisonMarker = "drill-poison-reset"

var tagRE = regexp.MustCompile(`drill-tag:([a-z0-9-]+)`)

// engineAttempt is one request the engine received for a drill tag.
type engineAttempt struct {
	Route            string
	Stream           bool
	Start, End       time.Time
	Reported         bool  // usage came from the engine's own report
	Cut              bool  // a stream that ended before its usage chunk
	Reset            bool  // the poison marker: connection reset
	PromptTokens     int64 // reported, else /tokenize of what the engine got
	CompletionTokens int64 // reported, else content chunks sent (a cut stream); -1: unknown (a cut non-stream answer)
	Status           int
}

// engineProxy is the recording, vLLM-parsing, fault-injecting proxy.
type engineProxy struct {
	target string // the simulator's base URL
	model  string
	hc     *http.Client
	srv    *http.Server
	URL    string

	mu       sync.Mutex
	attempts map[string][]*engineAttempt
	untagged int
}

func startEngineProxy(target, model string) (*engineProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &engineProxy{target: target, model: model, attempts: map[string][]*engineAttempt{},
		hc: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256}}, URL: "http://" + ln.Addr().String()}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	return p, nil
}

func (p *engineProxy) Close() { p.srv.Close() }

// Attempts returns a copy of the attempts recorded for tag, oldest first.
func (p *engineProxy) Attempts(tag string) []engineAttempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]engineAttempt, 0, len(p.attempts[tag]))
	for _, a := range p.attempts[tag] {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Dump writes every recorded attempt, per tag, as JSON to path (for a
// kept drill folder).
func (p *engineProxy) Dump(path string) error {
	p.mu.Lock()
	b, err := json.MarshalIndent(p.attempts, "", " ")
	p.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// Counts returns how many tags reached the engine, and how many generation
// requests carried no tag.
func (p *engineProxy) Counts() (tags, untagged int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts), p.untagged
}

func (p *engineProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	gen := r.Method == http.MethodPost && (r.URL.Path == "/v1/chat/completions" || r.URL.Path == "/v1/completions")
	if !gen {
		p.passThrough(w, r, body)
		return
	}
	tag := ""
	if m := tagRE.FindSubmatch(body); m != nil {
		tag = string(m[1])
	}
	view, stream := vllmView(r.URL.Path, body)
	a := &engineAttempt{Route: r.URL.Path, Stream: stream, Start: time.Now()}
	p.mu.Lock()
	if tag == "" {
		p.untagged++
	} else {
		p.attempts[tag] = append(p.attempts[tag], a)
	}
	p.mu.Unlock()
	set := func(f func()) {
		p.mu.Lock()
		defer p.mu.Unlock()
		f()
		a.End = time.Now()
	}

	if bytes.Contains(body, []byte(poisonMarker)) {
		prompt := p.tokenize(r.Context(), r.URL.Path, view)
		set(func() { a.Reset, a.PromptTokens = true, prompt })
		resetConn(w)
		return
	}

	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.target+r.URL.Path, bytes.NewReader(view))
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		set(func() { a.Cut = true })
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode != http.StatusOK || !stream {
		b, rerr := io.ReadAll(resp.Body)
		w.Write(b) //nolint:errcheck
		if resp.StatusCode == http.StatusOK && (rerr != nil || !bytes.Contains(b, []byte(`"usage":{`))) {
			// Cut before the answer (the worker went away): the engine
			// processed the prompt; how much it generated is unknown.
			prompt := p.tokenize(context.WithoutCancel(r.Context()), r.URL.Path, view)
			set(func() { a.Status, a.Cut, a.PromptTokens, a.CompletionTokens = 200, true, prompt, -1 })
			return
		}
		var u struct {
			Usage *struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
			} `json:"usage"`
		}
		set(func() {
			a.Status = resp.StatusCode
			if json.Unmarshal(b, &u) == nil && u.Usage != nil {
				a.Reported, a.PromptTokens, a.CompletionTokens = true, u.Usage.PromptTokens, u.Usage.CompletionTokens
			}
		})
		return
	}
	// A stream: forward line by line, reading the usage chunk as it passes.
	fl, _ := w.(http.Flusher)
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var chunks int64
	reported := false
	var pt, ct int64
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if data, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				data = bytes.TrimSpace(data)
				switch {
				case string(data) == "[DONE]":
				case bytes.Contains(data, []byte(`"usage":{`)):
					var u struct {
						Usage *struct {
							PromptTokens     int64 `json:"prompt_tokens"`
							CompletionTokens int64 `json:"completion_tokens"`
						} `json:"usage"`
					}
					if json.Unmarshal(data, &u) == nil && u.Usage != nil {
						reported, pt, ct = true, u.Usage.PromptTokens, u.Usage.CompletionTokens
					}
					chunks += contentChunk(data)
				default:
					chunks += contentChunk(data)
				}
			}
			if _, werr := w.Write(line); werr != nil {
				break
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			break
		}
	}
	if reported {
		set(func() { a.Status, a.Reported, a.PromptTokens, a.CompletionTokens = 200, true, pt, ct })
		return
	}
	// Cut before the usage chunk (the worker went away, or the client did):
	// the engine processed the prompt and sent these chunks.
	prompt := p.tokenize(context.WithoutCancel(r.Context()), r.URL.Path, view)
	set(func() { a.Status, a.Cut, a.PromptTokens, a.CompletionTokens = 200, true, prompt, chunks })
}

// passThrough forwards health polls, /tokenize and anything else.
func (p *engineProxy) passThrough(w http.ResponseWriter, r *http.Request, body []byte) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := p.hc.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(b) //nolint:errcheck
}

// tokenize asks the simulator how many prompt tokens view has: one
// /tokenize call for a chat request's messages, one per prompt of a
// completion request (the prompts are prefilled once, whatever n).
func (p *engineProxy) tokenize(ctx context.Context, route string, view []byte) int64 {
	var f map[string]json.RawMessage
	if json.Unmarshal(view, &f) != nil {
		return -1
	}
	var bodies []map[string]any
	if route == "/v1/chat/completions" {
		bodies = append(bodies, map[string]any{"model": p.model, "messages": f["messages"]})
	} else {
		var one string
		var many []string
		if json.Unmarshal(f["prompt"], &one) == nil {
			many = []string{one}
		} else if json.Unmarshal(f["prompt"], &many) != nil {
			return -1
		}
		for _, s := range many {
			bodies = append(bodies, map[string]any{"model": p.model, "prompt": s})
		}
	}
	var total int64
	for _, b := range bodies {
		js, _ := json.Marshal(b)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.target+"/tokenize", bytes.NewReader(js))
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.hc.Do(req)
		if err != nil {
			return -1
		}
		var t struct {
			Count int64 `json:"count"`
		}
		err = json.NewDecoder(resp.Body).Decode(&t)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return -1
		}
		total += t.Count
	}
	return total
}

// resetConn drops the client's connection with a TCP RST.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) //nolint:errcheck
	}
	conn.Close()
}

// vllmView is the body as vLLM would act on it, for the simulator: the
// top-level keys parsed as Python does (exact case, last duplicate wins),
// only the lower-case ones kept (vLLM ignores the others), and for chat the
// template material outside message text (tools, response_format,
// tool_calls arguments) added as a leading system message. It also reports
// whether the request streams.
func vllmView(route string, body []byte) ([]byte, bool) {
	var f map[string]json.RawMessage // duplicate keys: the last wins, as in Python
	if err := json.Unmarshal(body, &f); err != nil {
		return body, false
	}
	for k := range f {
		if strings.ToLower(k) != k {
			delete(f, k)
		}
	}
	var stream bool
	json.Unmarshal(f["stream"], &stream) //nolint:errcheck
	if route == "/v1/chat/completions" {
		var extra []string
		for _, k := range []string{"tools", "response_format", "guided_json"} {
			if v, ok := f[k]; ok && string(v) != "null" {
				extra = append(extra, k+": "+string(v))
			}
		}
		var msgs []map[string]json.RawMessage
		if json.Unmarshal(f["messages"], &msgs) == nil {
			for _, m := range msgs {
				if v, ok := m["tool_calls"]; ok && string(v) != "null" {
					extra = append(extra, "tool_calls: "+string(v))
				}
			}
			if len(extra) > 0 {
				content, _ := json.Marshal(strings.Join(extra, "\n"))
				sys := map[string]json.RawMessage{"role": json.RawMessage(`"system"`), "content": content}
				// The simulator renders text only: tool_calls become text above;
				// a message without content gets an empty one.
				for _, m := range msgs {
					delete(m, "tool_calls")
					if c, ok := m["content"]; !ok || string(c) == "null" {
						m["content"] = json.RawMessage(`""`)
					}
					if r := string(m["role"]); r == `"tool"` {
						m["role"] = json.RawMessage(`"user"`)
						delete(m, "tool_call_id")
					}
				}
				msgs = append([]map[string]json.RawMessage{sys}, msgs...)
				f["messages"], _ = json.Marshal(msgs)
				delete(f, "tools")
				delete(f, "tool_choice")
				delete(f, "response_format")
				delete(f, "guided_json")
			}
		}
	}
	out, err := json.Marshal(f)
	if err != nil {
		return body, stream
	}
	return out, stream
}

// contentChunk is 1 when a stream chunk carries generated text.
func contentChunk(data []byte) int64 {
	var c struct {
		Choices []struct {
			Text  string `json:"text"`
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &c) != nil {
		return 0
	}
	for _, ch := range c.Choices {
		if ch.Text != "" || ch.Delta.Content != "" {
			return 1
		}
	}
	return 0
}
