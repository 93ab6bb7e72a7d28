package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/sluice-ai/sluice/shared/openai"
)

// responseEvent is what the worker reads of one Responses API stream event.
type responseEvent struct {
	Type     string `json:"type"`
	Delta    string `json:"delta"`
	Response *struct {
		Usage *usageJSON `json:"usage"`
	} `json:"response"`
}

// producingEvents are the Responses stream events that carry generated
// output, one engine step each: a cut stream pays for these.
var producingEvents = map[string]bool{
	"response.output_text.delta":             true,
	"response.refusal.delta":                 true,
	"response.function_call_arguments.delta": true,
	"response.reasoning_text.delta":          true,
	"response.reasoning_summary_text.delta":  true,
}

// readResponsesStream reads a /v1/responses stream: "event:"/"data:"
// pairs with the type inside each payload, ended by response.completed or
// response.incomplete (which carry the usage), or by response.failed or an
// error event (a failure). vLLM sends no [DONE]; one is accepted too.
func readResponsesStream(ctx context.Context, r io.Reader, onChunk func([]byte) error) (*Result, error) {
	res := &Result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	done := false
	for !done && sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			break
		}
		var ev responseEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return res, &Error{Err: errors.New("bad responses stream event: " + err.Error()), Retryable: res.Chunks == 0 && ctx.Err() == nil}
		}
		switch ev.Type {
		case "error", "response.failed":
			eb := openai.UpstreamError(http.StatusInternalServerError, data)
			if ev.Response != nil && ev.Response.Usage != nil {
				res.Usage = ev.Response.Usage.toUsage()
			}
			return res, &Error{Status: http.StatusInternalServerError, Body: eb, Err: errors.New("error event mid-stream: " + eb.Message)}
		case "response.completed", "response.incomplete":
			if ev.Response != nil && ev.Response.Usage != nil {
				res.Usage = ev.Response.Usage.toUsage()
			}
			done = true
		default:
			res.Chunks++
			if producingEvents[ev.Type] && ev.Delta != "" {
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
		return res, &Error{Err: errors.New("responses stream ended without response.completed"), Retryable: res.Chunks == 0 && ctx.Err() == nil}
	}
	return res, nil
}

// ChunkProduces reports whether one relayed chunk, as stored in a job's
// result stream, carries generated output: a chat or completions chunk
// with text, content, reasoning or tool-call deltas, or a Responses event
// of a producing kind. It prices the output a lost worker showed.
func ChunkProduces(data []byte) bool {
	if bytes.Contains(data, []byte(`"type":"response.`)) {
		var ev responseEvent
		return json.Unmarshal(data, &ev) == nil && producingEvents[ev.Type] && ev.Delta != ""
	}
	return ProducesTokens(data)
}
