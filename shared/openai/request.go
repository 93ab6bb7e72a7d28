package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// Request is a validated inference request, ready to become a job.
type Request struct {
	Endpoint     string // sluice.EndpointChat or sluice.EndpointCompletion
	Model        *config.Model
	Requested    string // the alias the client sent, when one chose Model; else empty
	Stream       bool
	IncludeUsage bool  // the client asked for the usage chunk
	MaxTokens    int64 // 0 when the client left it to the engine
	PromptBytes  int64 // UTF-8 bytes of the prompt: an upper bound on its tokens
	Messages     int   // chat messages (0 for completions)
	Choices      int64 // n (1 when absent)
	// Deterministic: temperature 0 and one choice, so the same body gives
	// the same answer (the response cache serves only these).
	Deterministic bool
	Upstream      []byte
}

// ReadBody reads a request body up to limit bytes: 413 past it, 400 for
// anything that is not a UTF-8 JSON object.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON, "Could not read the request body.")
	}
	if int64(len(body)) > limit {
		return nil, &sluice.Error{Kind: sluice.KindTooLarge, Code: sluice.CodeRequestTooLarge,
			Message: fmt.Sprintf("The request body is larger than %d bytes.", limit)}
	}
	if !utf8.Valid(body) {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON, "The request body is not valid UTF-8.")
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' || !json.Valid(body) {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON,
			"We could not parse the JSON body of your request. The OpenAI API expects a JSON object.")
	}
	return body, nil
}

type message struct {
	Role    *string         `json:"role"`
	Content json.RawMessage `json:"content"`
}

// common holds the fields both endpoints share.
type common struct {
	Model               *string         `json:"model"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Stream              *bool           `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	N                   *int64          `json:"n"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Messages            *[]message      `json:"messages"`
	Prompt              json.RawMessage `json:"prompt"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Models resolves model names; config.Config implements it.
type Models interface {
	Model(name string) (*config.Model, bool)
}

// Limits bound what a request may ask for.
type Limits struct {
	MaxMessages        int
	BytesPerTokenFloor int
}

// Parse validates a chat or completions request body and builds the body sent
// upstream: the client's own fields (unknown ones pass through, as OpenAI
// ignores them) with stream usage always requested, so every job is metered.
func Parse(endpoint string, body []byte, models Models, lim Limits) (*Request, error) {
	var c common
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, decodeError(err)
	}
	if c.Model == nil || *c.Model == "" {
		return nil, sluice.Invalid("model", sluice.CodeMissingRequired, "You must provide a model parameter.")
	}
	m, ok := models.Model(*c.Model)
	if !ok {
		return nil, &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeModelNotFound, Param: "model",
			Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", *c.Model)}
	}
	req := &Request{Endpoint: endpoint, Model: m}
	var err error
	switch endpoint {
	case sluice.EndpointChat:
		req.PromptBytes, err = chatPrompt(c, lim)
		if c.Messages != nil {
			req.Messages = len(*c.Messages)
		}
	case sluice.EndpointCompletion:
		req.PromptBytes, err = completionPrompt(c)
	default:
		return nil, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "Unknown endpoint %s.", endpoint)
	}
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"max_tokens", c.MaxTokens}, {"max_completion_tokens", c.MaxCompletionTokens}} {
		if f.v == nil {
			continue
		}
		if *f.v <= 0 {
			return nil, sluice.Invalid(f.name, sluice.CodeInvalidValue, "%s must be at least 1, got %d.", f.name, *f.v)
		}
		if *f.v >= int64(m.MaxModelLen) {
			return nil, sluice.Invalid(f.name, sluice.CodeContextLengthExceeded,
				"%s is %d, but model %s has a context of %d tokens, prompt included.", f.name, *f.v, m.Name, m.MaxModelLen)
		}
		req.MaxTokens = *f.v
	}
	if c.N != nil && (*c.N < 1 || *c.N > 16) {
		return nil, sluice.Invalid("n", sluice.CodeInvalidValue, "n must be between 1 and 16.")
	}
	req.Choices = 1
	if c.N != nil {
		req.Choices = *c.N
	}
	req.Deterministic = c.Temperature != nil && *c.Temperature == 0 && req.Choices == 1
	if c.Temperature != nil && (*c.Temperature < 0 || *c.Temperature > 2) {
		return nil, sluice.Invalid("temperature", sluice.CodeInvalidValue, "temperature must be between 0 and 2.")
	}
	if c.TopP != nil && (*c.TopP < 0 || *c.TopP > 1) {
		return nil, sluice.Invalid("top_p", sluice.CodeInvalidValue, "top_p must be between 0 and 1.")
	}
	// Without a tokenizer the prompt's exact length is unknown, but no token is
	// longer than BytesPerTokenFloor bytes: a prompt with more bytes than that
	// many tokens can hold is certainly too long. Nearer cases are left to the
	// engine, whose 400 is passed through.
	minTokens := req.PromptBytes / int64(max(lim.BytesPerTokenFloor, 1))
	if minTokens+req.MaxTokens > int64(m.MaxModelLen) {
		return nil, sluice.Invalid("messages", sluice.CodeContextLengthExceeded,
			"This model's maximum context length is %d tokens; the prompt alone needs at least %d.", m.MaxModelLen, minTokens)
	}
	if c.Stream != nil {
		req.Stream = *c.Stream
	}
	if c.StreamOptions != nil {
		if !req.Stream {
			return nil, sluice.Invalid("stream_options", sluice.CodeInvalidValue, "stream_options is only allowed when stream is true.")
		}
		req.IncludeUsage = c.StreamOptions.IncludeUsage
	}
	rename := ""
	if m.Name != *c.Model {
		rename = m.Name // an alias: the engine serves the version
		req.Requested = *c.Model
	}
	req.Upstream, err = upstreamBody(body, req.Stream, rename)
	return req, err
}

func chatPrompt(c common, lim Limits) (int64, error) {
	if c.Messages == nil {
		return 0, sluice.Invalid("messages", sluice.CodeMissingRequired, "Missing required parameter: 'messages'.")
	}
	msgs := *c.Messages
	if len(msgs) == 0 {
		return 0, sluice.Invalid("messages", sluice.CodeInvalidValue, "'messages' must contain at least one message.")
	}
	if lim.MaxMessages > 0 && len(msgs) > lim.MaxMessages {
		return 0, sluice.Invalid("messages", sluice.CodeInvalidValue, "'messages' may hold at most %d messages.", lim.MaxMessages)
	}
	var n int64
	for i, m := range msgs {
		p := fmt.Sprintf("messages[%d]", i)
		if m.Role == nil {
			return 0, sluice.Invalid(p+".role", sluice.CodeMissingRequired, "Missing required parameter: '%s.role'.", p)
		}
		switch *m.Role {
		case "system", "user", "assistant", "tool", "developer", "function":
		default:
			return 0, sluice.Invalid(p+".role", sluice.CodeInvalidValue, "Invalid value %q for '%s.role'.", *m.Role, p)
		}
		content := bytes.TrimSpace(m.Content)
		switch {
		case len(content) == 0 || string(content) == "null":
			if *m.Role != "assistant" { // an assistant turn may carry only tool calls
				return 0, sluice.Invalid(p+".content", sluice.CodeMissingRequired, "Missing required parameter: '%s.content'.", p)
			}
		case content[0] == '"':
			var s string
			if json.Unmarshal(content, &s) != nil {
				return 0, sluice.Invalid(p+".content", sluice.CodeInvalidValue, "'%s.content' is not a valid string.", p)
			}
			n += int64(len(s))
		case content[0] == '[':
			var parts []struct {
				Type string  `json:"type"`
				Text *string `json:"text"`
			}
			if err := json.Unmarshal(content, &parts); err != nil {
				return 0, sluice.Invalid(p+".content", sluice.CodeInvalidValue, "'%s.content' must be a string or an array of content parts.", p)
			}
			for _, part := range parts {
				if part.Text != nil {
					n += int64(len(*part.Text))
				}
			}
		default:
			return 0, sluice.Invalid(p+".content", sluice.CodeInvalidValue, "'%s.content' must be a string or an array of content parts.", p)
		}
		n += int64(len(*m.Role))
	}
	return n, nil
}

func completionPrompt(c common) (int64, error) {
	p := bytes.TrimSpace(c.Prompt)
	if len(p) == 0 || string(p) == "null" {
		return 0, sluice.Invalid("prompt", sluice.CodeMissingRequired, "Missing required parameter: 'prompt'.")
	}
	var s string
	if json.Unmarshal(p, &s) == nil {
		if s == "" {
			return 0, sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' must not be empty.")
		}
		return int64(len(s)), nil
	}
	var list []string
	if json.Unmarshal(p, &list) == nil {
		if len(list) == 0 {
			return 0, sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' must not be empty.")
		}
		var n int64
		for _, s := range list {
			n += int64(len(s))
		}
		return n, nil
	}
	var toks []int64
	if json.Unmarshal(p, &toks) == nil && len(toks) > 0 {
		return int64(len(toks)), nil // token ids: the count is exact
	}
	var tokLists [][]int64
	if json.Unmarshal(p, &tokLists) == nil && len(tokLists) > 0 {
		var n int64
		for _, t := range tokLists {
			n += int64(len(t))
		}
		return n, nil
	}
	return 0, sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' must be a string, an array of strings, or an array of token ids.")
}

// upstreamBody keeps the client's fields and asks for usage on streams.
func upstreamBody(body []byte, stream bool, rename string) ([]byte, error) {
	if !stream && rename == "" {
		return body, nil // usage always comes with a whole response
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, decodeError(err)
	}
	if stream {
		fields["stream_options"] = json.RawMessage(`{"include_usage":true}`)
	}
	if rename != "" {
		fields["model"], _ = json.Marshal(rename)
	}
	return json.Marshal(fields)
}

func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		param := te.Field
		return sluice.Invalid(param, sluice.CodeInvalidValue, "Invalid type for '%s': expected %s, got %s.", param, jsonType(te.Type.Kind().String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return sluice.Invalid("", sluice.CodeInvalidJSON, "We could not parse the JSON body of your request.")
	}
	return sluice.Invalid("", sluice.CodeInvalidJSON, "We could not parse the JSON body of your request.")
}

func jsonType(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "a boolean"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	}
	return "an object"
}
