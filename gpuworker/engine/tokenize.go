package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// ErrNoTokenizer is returned by PromptTokens for an engine kind without a
// /tokenize route (TGI, Ollama, hosted OpenAI-compatible servers) or a body
// whose prompt it cannot split into /tokenize calls.
var ErrNoTokenizer = errors.New("engine: no tokenizer route for this engine or request")

// maxTokenizeCalls bounds the /tokenize calls one job may cost (a batched
// completion sends one per prompt); beyond it the caller falls back to the
// held bound.
const maxTokenizeCalls = 256

// PromptTokens counts the prompt tokens the engine processed for a job's
// body with the engine's own tokenizer, POST /tokenize, one call per prompt
// (a batched /v1/completions prompt or /v1/embeddings input is summed):
// what a cut or failed job pays for its prefill when the engine never
// reported usage. vLLM and the simulator serve the route.
func (c *Client) PromptTokens(ctx context.Context, model, endpoint string, body []byte, timeout time.Duration) (int64, error) {
	if c.Kind != "" && c.Kind != KindVLLM {
		return 0, ErrNoTokenizer
	}
	reqs, err := tokenizeRequests(model, endpoint, body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var total int64
	for _, r := range reqs {
		if r.ids >= 0 { // token ids: counted as sent
			total += r.ids
			continue
		}
		n, err := c.tokenize(ctx, r.body)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

type tokenizeReq struct {
	body []byte // a /tokenize request
	ids  int64  // ≥ 0: a prompt of token ids, this many
}

// tokenizeRequests splits a job body into /tokenize requests: one for a
// chat (its messages, and tools when present, which the template renders),
// one per prompt of a completion or input of an embeddings request.
func tokenizeRequests(model, endpoint string, body []byte) ([]tokenizeReq, error) {
	switch endpoint {
	case sluice.EndpointChat:
		var b struct {
			Messages json.RawMessage `json:"messages"`
			Tools    json.RawMessage `json:"tools"`
		}
		if err := json.Unmarshal(body, &b); err != nil || len(b.Messages) == 0 {
			return nil, ErrNoTokenizer
		}
		req := map[string]any{"model": model, "messages": b.Messages}
		if len(b.Tools) > 0 && string(b.Tools) != "null" {
			req["tools"] = b.Tools
		}
		out, _ := json.Marshal(req)
		return []tokenizeReq{{body: out, ids: -1}}, nil
	case sluice.EndpointResponses:
		return responsesTokenizeRequest(model, body)
	case sluice.EndpointCompletion, sluice.EndpointEmbeddings:
		// An embeddings input has the completions prompt's four shapes.
		var b struct {
			Prompt json.RawMessage `json:"prompt"`
			Input  json.RawMessage `json:"input"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, ErrNoTokenizer
		}
		if endpoint == sluice.EndpointEmbeddings {
			b.Prompt = b.Input
		}
		if len(b.Prompt) == 0 {
			return nil, ErrNoTokenizer
		}
		var one string
		if json.Unmarshal(b.Prompt, &one) == nil {
			return []tokenizeReq{promptReq(model, one)}, nil
		}
		var ids []int64
		if json.Unmarshal(b.Prompt, &ids) == nil {
			return []tokenizeReq{{ids: int64(len(ids))}}, nil
		}
		var list []json.RawMessage
		if json.Unmarshal(b.Prompt, &list) != nil || len(list) > maxTokenizeCalls {
			return nil, ErrNoTokenizer
		}
		var out []tokenizeReq
		for _, p := range list {
			if json.Unmarshal(p, &one) == nil {
				out = append(out, promptReq(model, one))
				continue
			}
			if json.Unmarshal(p, &ids) == nil {
				out = append(out, tokenizeReq{ids: int64(len(ids))})
				continue
			}
			return nil, ErrNoTokenizer
		}
		return out, nil
	}
	return nil, ErrNoTokenizer
}

func promptReq(model, prompt string) tokenizeReq {
	out, _ := json.Marshal(map[string]string{"model": model, "prompt": prompt})
	return tokenizeReq{body: out, ids: -1}
}

// tokenize makes one /tokenize call and returns its count.
func (c *Client) tokenize(ctx context.Context, body []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/tokenize", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("engine: /tokenize answered %d", resp.StatusCode)
	}
	var out struct {
		Count  *int64  `json:"count"`
		Tokens []int64 `json:"tokens"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, fmt.Errorf("engine: /tokenize: %w", err)
	}
	if out.Count != nil {
		return *out.Count, nil
	}
	return int64(len(out.Tokens)), nil
}

// responsesTokenizeRequest turns a /v1/responses body into the chat
// /tokenize request of the prompt the engine renders for it: instructions
// as a system message, each input item as the message vLLM makes of it
// (text parts joined, function calls as tool calls, their outputs as tool
// messages), tools as sent.
func responsesTokenizeRequest(model string, body []byte) ([]tokenizeReq, error) {
	var b struct {
		Instructions *string         `json:"instructions"`
		Input        json.RawMessage `json:"input"`
		Tools        json.RawMessage `json:"tools"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Input) == 0 {
		return nil, ErrNoTokenizer
	}
	var msgs []map[string]any
	if b.Instructions != nil {
		msgs = append(msgs, map[string]any{"role": "system", "content": *b.Instructions})
	}
	var one string
	if json.Unmarshal(b.Input, &one) == nil {
		msgs = append(msgs, map[string]any{"role": "user", "content": one})
	} else {
		var items []struct {
			Type      string          `json:"type"`
			Role      string          `json:"role"`
			Content   json.RawMessage `json:"content"`
			CallID    string          `json:"call_id"`
			Name      string          `json:"name"`
			Arguments string          `json:"arguments"`
			Output    json.RawMessage `json:"output"`
		}
		if json.Unmarshal(b.Input, &items) != nil {
			return nil, ErrNoTokenizer
		}
		for _, it := range items {
			switch {
			case it.Type == "function_call":
				msgs = append(msgs, map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": it.CallID,
					"type": "function", "function": map[string]any{"name": it.Name, "arguments": it.Arguments}}}})
			case it.Type == "function_call_output":
				var out string
				if json.Unmarshal(it.Output, &out) != nil {
					out = string(it.Output)
				}
				msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": it.CallID, "content": out})
			case it.Role != "":
				msgs = append(msgs, map[string]any{"role": it.Role, "content": partsText(it.Content)})
			}
		}
	}
	if len(msgs) == 0 {
		return nil, ErrNoTokenizer
	}
	req := map[string]any{"model": model, "messages": msgs}
	if len(b.Tools) > 0 && string(b.Tools) != "null" {
		req["tools"] = b.Tools
	}
	out, _ := json.Marshal(req)
	return []tokenizeReq{{body: out, ids: -1}}, nil
}

// partsText is a Responses message's content as text: a string as is, the
// text parts of a list joined.
func partsText(content json.RawMessage) string {
	var s string
	if json.Unmarshal(content, &s) == nil {
		return s
	}
	var parts []struct {
		Text    string `json:"text"`
		Refusal string `json:"refusal"`
	}
	json.Unmarshal(content, &parts) //nolint:errcheck // no parts: no text
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
		b.WriteString(p.Refusal)
	}
	return b.String()
}
