package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
