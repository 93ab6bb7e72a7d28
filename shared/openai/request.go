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
	Endpoint     string // sluice.EndpointChat, EndpointCompletion or EndpointEmbeddings
	Model        *config.Model
	Requested    string // the alias the client sent, when one chose Model; else empty
	Stream       bool
	IncludeUsage bool  // the client asked for the usage chunk
	MaxTokens    int64 // 0 when the client left it to the engine
	// PromptBytes bounds the prompt's tokens: every byte the chat template
	// can render (messages, names, tool calls, tools, schemas), or the
	// prompts' bytes (token ids counted one each).
	PromptBytes int64
	// ExtraTokens are prompt tokens beyond bytes: the model's template and
	// tools overhead, and its bound per image or audio part.
	ExtraTokens int64
	// Room is the completion bound per choice and prompt when MaxTokens is
	// 0: the context the shortest prompt leaves.
	Room     int64
	Messages int   // chat messages (0 for completions)
	Prompts  int64 // prompts the engine runs: a completions batch, else 1
	Choices  int64 // completions per prompt: max(n, best_of), 1 when absent
	// NoCompletion: the engine generates nothing (embeddings), so the hold
	// has no completion part; Prompts counts the inputs.
	NoCompletion bool
	// Deterministic: temperature 0 and one choice, so the same body gives
	// the same answer (the response cache serves only these).
	Deterministic bool
	// ServiceTier is the client's service_tier as sent (auto, default,
	// flex, priority), empty when absent; Sluice consumes it (tier.go).
	ServiceTier string
	// Upstream is the body the engine gets: the client's allowlisted fields
	// re-encoded from the strict parse, never the raw bytes.
	Upstream []byte
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

// common holds the typed fields both endpoints share. It is decoded only
// after Decode and the allowlist have made every key exact and unique, so
// encoding/json's case-insensitive matching cannot see another field than
// the engine does.
type common struct {
	Model               *string        `json:"model"`
	MaxTokens           *int64         `json:"max_tokens"`
	MaxCompletionTokens *int64         `json:"max_completion_tokens"`
	Stream              *bool          `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	N                   *int64         `json:"n"`
	BestOf              *int64         `json:"best_of"`
	Temperature         *float64       `json:"temperature"`
	TopP                *float64       `json:"top_p"`
	MinTokens           *int64         `json:"min_tokens"`
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

// Parse validates a chat, completions or embeddings request body, bounds what the
// engine can count for it, and builds the body sent upstream: the client's
// allowlisted fields re-encoded (invariant 9), with stream usage always
// requested so every job is metered.
func Parse(endpoint string, body []byte, models Models, lim Limits) (*Request, error) {
	route, ok := Routes[endpoint]
	if !ok || endpoint == sluice.EndpointResponses { // ParseResponses parses those
		return nil, sluice.Errorf(sluice.KindNotFound, sluice.CodeNotFound, "Unknown endpoint %s.", endpoint)
	}
	tree, err := Decode(body)
	if err != nil {
		return nil, err
	}
	if tree.Kind != Object {
		return nil, sluice.Invalid("", sluice.CodeInvalidJSON, "The OpenAI API expects a JSON object.")
	}
	name, _ := str(tree.Get("model"))
	if mv := tree.Get("model"); mv == nil || mv.Kind == Null || (mv.Kind == String && name == "") {
		return nil, sluice.Invalid("model", sluice.CodeMissingRequired, "You must provide a model parameter.")
	} else if mv.Kind != String {
		return nil, sluice.Invalid("model", sluice.CodeInvalidValue, "Invalid type for 'model': expected a string.")
	}
	m, ok := models.Model(name)
	if !ok {
		return nil, &sluice.Error{Kind: sluice.KindNotFound, Code: sluice.CodeModelNotFound, Param: "model",
			Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", name)}
	}
	if err := checkTask(endpoint, name, m); err != nil {
		return nil, err
	}
	if err := checkFields(route, tree, m); err != nil {
		return nil, err
	}
	rename := ""
	if m.Name != name {
		rename = m.Name // an alias: the engine serves the version
	}
	if endpoint == sluice.EndpointEmbeddings {
		req, err := embeddingsRequest(tree, m, lim)
		if err != nil {
			return nil, err
		}
		if rename != "" {
			req.Requested = name
		}
		req.Upstream = upstreamBody(route, tree, false, rename)
		return req, nil
	}
	var c common
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, decodeError(err)
	}
	req := &Request{Endpoint: endpoint, Model: m}
	if req.ServiceTier, err = ServiceTier(tree); err != nil {
		return nil, err
	}
	var pb promptBound
	switch endpoint {
	case sluice.EndpointChat:
		pb, err = chatBound(tree, route, m, lim)
	default:
		pb, err = completionBound(tree, route, m)
	}
	if err != nil {
		return nil, err
	}
	if endpoint == sluice.EndpointChat {
		req.Messages = len(tree.Get("messages").Items)
	}
	req.PromptBytes, req.ExtraTokens, req.Prompts = pb.render, pb.extra, pb.prompts
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
	if c.MinTokens != nil && req.MaxTokens > 0 && *c.MinTokens > req.MaxTokens {
		return nil, sluice.Invalid("min_tokens", sluice.CodeInvalidValue, "min_tokens must not exceed max_tokens.")
	}
	if c.N != nil && (*c.N < 1 || *c.N > 16) {
		return nil, sluice.Invalid("n", sluice.CodeInvalidValue, "n must be between 1 and 16.")
	}
	req.Choices = 1
	if c.N != nil {
		req.Choices = *c.N
	}
	if c.BestOf != nil {
		if *c.BestOf < req.Choices || *c.BestOf > 16 {
			return nil, sluice.Invalid("best_of", sluice.CodeInvalidValue, "best_of must be between n and 16.")
		}
		req.Choices = *c.BestOf // the engine generates best_of sequences and returns n
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
	floor := int64(max(lim.BytesPerTokenFloor, 1))
	if minTokens := pb.longest / floor; minTokens+req.MaxTokens > int64(m.MaxModelLen) {
		param := "messages"
		if endpoint == sluice.EndpointCompletion {
			param = "prompt"
		}
		return nil, sluice.Invalid(param, sluice.CodeContextLengthExceeded,
			"This model's maximum context length is %d tokens; the prompt alone needs at least %d.", m.MaxModelLen, minTokens)
	}
	req.Room = max(int64(m.MaxModelLen)-pb.shortest/floor, 1)
	if c.Stream != nil {
		req.Stream = *c.Stream
	}
	if c.StreamOptions != nil {
		if !req.Stream {
			return nil, sluice.Invalid("stream_options", sluice.CodeInvalidValue, "stream_options is only allowed when stream is true.")
		}
		req.IncludeUsage = c.StreamOptions.IncludeUsage
	}
	if rename != "" {
		req.Requested = name
	}
	req.Upstream = upstreamBody(route, tree, req.Stream, rename)
	return req, nil
}

// upstreamBody re-encodes the checked body, asking for usage on streams and
// naming the served version of an alias.
func upstreamBody(route Route, tree *Value, stream bool, rename string) []byte {
	out := &Value{Kind: Object}
	usage := &Value{Kind: Object, Members: []Member{{Key: "include_usage", Val: &Value{Kind: Bool, Bool: true}}}}
	for _, f := range tree.Members {
		switch {
		case f.Key == "stream_options":
			continue // set below when streaming
		case route.Consumed(f.Key):
			continue // Sluice's own (service_tier): never the engine's
		case f.Key == "model" && rename != "":
			f.Val = &Value{Kind: String, Str: rename}
		}
		out.Members = append(out.Members, f)
	}
	if stream {
		out.Members = append(out.Members, Member{Key: "stream_options", Val: usage})
	}
	return out.Bytes()
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
