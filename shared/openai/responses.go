package openai

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// responsesFields is POST /v1/responses' allowlist. store,
// previous_response_id and metadata are Sluice's own: they are checked here
// and never reach the engine (vLLM would look a previous_response_id up in
// its own per-replica store, and keep a response it was asked to store).
var responsesFields = map[string]Field{
	"model":                {},
	"input":                {},
	"instructions":         {},
	"max_output_tokens":    {},
	"temperature":          {},
	"top_p":                {},
	"stream":               {},
	"user":                 {},
	"store":                {},
	"previous_response_id": {},
	"metadata":             {check: metadataCheck},
	"service_tier":         ServiceTierField,
	"tools":                {kind: rendered, check: maxLen("tools", 128)},
	"tool_choice":          {kind: rendered},
	"parallel_tool_calls":  {},
	"text":                 {kind: rendered, check: keys("text", "format", "verbosity")},
	"reasoning":            {kind: rendered, check: keys("reasoning", "effort", "summary", "generate_summary")},
}

func init() { Routes[sluice.EndpointResponses] = Route{Fields: responsesFields} }

// sluiceOnly are the Responses fields Sluice keeps to itself.
var sluiceOnly = []string{"store", "previous_response_id", "metadata"}

// metadataCheck: OpenAI's metadata limits, 16 string pairs, keys up to 64
// characters, values up to 512.
func metadataCheck(v *Value) error {
	bad := sluice.Invalid("metadata", sluice.CodeInvalidValue,
		"metadata must be an object of at most 16 string values, keys up to 64 characters and values up to 512.")
	if v.Kind != Object || len(v.Members) > 16 {
		return bad
	}
	for _, m := range v.Members {
		if len(m.Key) > 64 || m.Val.Kind != String || len(m.Val.Str) > 512 {
			return bad
		}
	}
	return nil
}

// ResponsesRequest is a validated POST /v1/responses: the admission terms
// (Request, with Upstream the engine's body: history expanded, Sluice's own
// fields left out) and what Sluice keeps for itself.
type ResponsesRequest struct {
	Request
	Store      bool            // keep the response (default true, as OpenAI)
	PreviousID string          // the stored response this one continues, if any
	Metadata   json.RawMessage // the client's metadata object; nil when absent
	// Input is the whole input the engine gets, as a JSON array of items:
	// the previous response's history, then this request's input. A stored
	// response keeps it, so the next one in its chain can be expanded.
	Input json.RawMessage
}

// History returns the input items a stored response continues with: its
// own input, then its output. An unknown id (or another user's) is
// sluice.ErrNotFound.
type History func(id string) ([]json.RawMessage, error)

// responsesCommon are the typed Responses fields, decoded after Decode and
// the allowlist made every key exact and unique.
type responsesCommon struct {
	MaxOutputTokens    *int64   `json:"max_output_tokens"`
	Stream             *bool    `json:"stream"`
	Temperature        *float64 `json:"temperature"`
	TopP               *float64 `json:"top_p"`
	Store              *bool    `json:"store"`
	PreviousResponseID *string  `json:"previous_response_id"`
	Instructions       *string  `json:"instructions"`
	User               *string  `json:"user"`
}

// ParseResponses validates a POST /v1/responses body, expands its
// previous_response_id through history (nil: none may be given) and bounds
// the whole prompt the engine gets: instructions, every input item of the
// chain, tools and other rendered fields.
func ParseResponses(body []byte, models Models, lim Limits, history History) (*ResponsesRequest, error) {
	route := Routes[sluice.EndpointResponses]
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
	if err := checkTask(sluice.EndpointResponses, name, m); err != nil {
		return nil, err
	}
	if err := checkFields(route, tree, m); err != nil {
		return nil, err
	}
	var c responsesCommon
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, decodeError(err)
	}
	rr := &ResponsesRequest{Request: Request{Endpoint: sluice.EndpointResponses, Model: m, Prompts: 1, Choices: 1,
		IncludeUsage: true}, Store: c.Store == nil || *c.Store}
	if mv := tree.Get("metadata"); mv != nil && mv.Kind != Null {
		rr.Metadata = mv.Bytes()
	}
	// The client's input, as items.
	in := tree.Get("input")
	var items []*Value
	switch {
	case in == nil || in.Kind == Null:
		return nil, sluice.Invalid("input", sluice.CodeMissingRequired, "Missing required parameter: 'input'.")
	case in.Kind == String:
		items = []*Value{userMessage(in.Str)}
	case in.Kind == Array:
		if len(in.Items) == 0 {
			return nil, sluice.Invalid("input", sluice.CodeInvalidValue, "'input' must not be empty.")
		}
		items = in.Items
	default:
		return nil, sluice.Invalid("input", sluice.CodeInvalidValue, "'input' must be a string or an array of input items.")
	}
	b := promptBound{prompts: 1, extra: m.TemplateOverheadTokens}
	indent := m.TemplateJSONIndent
	for i, it := range items {
		if err := b.item(it, fmt.Sprintf("input[%d]", i), m, indent, false); err != nil {
			return nil, err
		}
	}
	// The history: previous_response_id, expanded by Sluice.
	var hist []*Value
	if c.PreviousResponseID != nil && *c.PreviousResponseID != "" {
		rr.PreviousID = *c.PreviousResponseID
		if history == nil {
			return nil, sluice.Invalid("previous_response_id", sluice.CodeInvalidValue, "previous_response_id is not available here.")
		}
		raw, err := history(rr.PreviousID)
		if err != nil {
			return nil, err
		}
		for i, r := range raw {
			v, err := Decode(r)
			if err != nil {
				return nil, fmt.Errorf("stored response %s: item %d: %w", rr.PreviousID, i, err)
			}
			if err := b.item(v, "previous_response_id", m, indent, true); err != nil {
				return nil, err
			}
			hist = append(hist, v)
		}
	}
	if lim.MaxMessages > 0 && len(hist)+len(items) > lim.MaxMessages {
		param := "input"
		if len(hist) > 0 {
			param = "previous_response_id"
		}
		return nil, sluice.Invalid(param, sluice.CodeInvalidValue, "The input, history included, may hold at most %d items.", lim.MaxMessages)
	}
	rr.Messages = len(hist) + len(items)
	if c.Instructions != nil {
		b.text += int64(len(*c.Instructions))
		b.render += int64(len(*c.Instructions)) + int64(len("system"))
		rr.Messages++
	}
	if t := tree.Get("tools"); t != nil && t.Kind == Array && len(t.Items) > 0 {
		b.extra += m.ToolsOverheadTokens
	}
	b.render += renderedBytes(route, tree, indent)
	rr.PromptBytes, rr.ExtraTokens = b.render, b.extra
	if v := c.MaxOutputTokens; v != nil {
		if *v <= 0 {
			return nil, sluice.Invalid("max_output_tokens", sluice.CodeInvalidValue, "max_output_tokens must be at least 1, got %d.", *v)
		}
		if *v >= int64(m.MaxModelLen) {
			return nil, sluice.Invalid("max_output_tokens", sluice.CodeContextLengthExceeded,
				"max_output_tokens is %d, but model %s has a context of %d tokens, prompt included.", *v, m.Name, m.MaxModelLen)
		}
		rr.MaxTokens = *v
	}
	if c.Temperature != nil && (*c.Temperature < 0 || *c.Temperature > 2) {
		return nil, sluice.Invalid("temperature", sluice.CodeInvalidValue, "temperature must be between 0 and 2.")
	}
	if c.TopP != nil && (*c.TopP < 0 || *c.TopP > 1) {
		return nil, sluice.Invalid("top_p", sluice.CodeInvalidValue, "top_p must be between 0 and 1.")
	}
	// As chat: a prompt certainly too long is refused; nearer cases are the
	// engine's to answer.
	floor := int64(max(lim.BytesPerTokenFloor, 1))
	if minTokens := b.text / floor; minTokens+rr.MaxTokens > int64(m.MaxModelLen) {
		return nil, sluice.Invalid("input", sluice.CodeContextLengthExceeded,
			"This model's maximum context length is %d tokens; the input, history included, needs at least %d.", m.MaxModelLen, minTokens)
	}
	rr.Room = max(int64(m.MaxModelLen)-b.text/floor, 1)
	if c.Stream != nil {
		rr.Stream = *c.Stream
	}
	if rr.ServiceTier, err = ServiceTier(tree); err != nil {
		return nil, err
	}
	// Never answered from the response cache: every response has its own id.
	rr.Deterministic = false
	all := &Value{Kind: Array, Items: append(slices.Clip(hist), items...)}
	rr.Input = all.Bytes()
	rename := ""
	if m.Name != name {
		rename = m.Name
		rr.Requested = name
	}
	out := &Value{Kind: Object}
	for _, f := range tree.Members {
		switch {
		case slices.Contains(sluiceOnly, f.Key), route.Consumed(f.Key):
			continue // Sluice's own: never the engine's
		case f.Key == "model" && rename != "":
			f.Val = &Value{Kind: String, Str: rename}
		case f.Key == "input" && len(hist) > 0:
			f.Val = all
		}
		out.Members = append(out.Members, f)
	}
	rr.Upstream = out.Bytes()
	return rr, nil
}

// userMessage is a string input as the item it stands for.
func userMessage(s string) *Value {
	return &Value{Kind: Object, Members: []Member{
		{Key: "type", Val: &Value{Kind: String, Str: "message"}},
		{Key: "role", Val: &Value{Kind: String, Str: "user"}},
		{Key: "content", Val: &Value{Kind: String, Str: s}},
	}}
}

// Keys each Responses input item kind may carry.
var (
	itemMessageKeys    = []string{"type", "role", "content", "id", "status"}
	itemCallKeys       = []string{"type", "id", "call_id", "name", "arguments", "status"}
	itemCallOutputKeys = []string{"type", "id", "call_id", "output", "status"}
	itemReasoningKeys  = []string{"type", "id", "summary", "content", "encrypted_content", "status"}
	itemPartKeys       = []string{"type", "text", "annotations", "logprobs", "refusal", "image_url", "file_id",
		"detail", "file_data", "filename", "file_url", "input_audio"}
)

// item adds one Responses input item to the bound. A client's items are
// checked strictly; stored history (lenient: Sluice kept it from the
// engine's own output) is bounded whatever its kind, an unknown kind by its
// whole JSON.
func (b *promptBound) item(it *Value, p string, m *config.Model, indent int, lenient bool) error {
	if it.Kind != Object {
		return sluice.Invalid(p, sluice.CodeInvalidValue, "'%s' must be an input item object.", p)
	}
	typ, _ := str(it.Get("type"))
	if tv := it.Get("type"); tv != nil && tv.Kind != String && !lenient {
		return sluice.Invalid(p+".type", sluice.CodeInvalidValue, "Invalid type for '%s.type': expected a string.", p)
	}
	if typ == "" && it.Get("role") != nil {
		typ = "message"
	}
	allowed := map[string][]string{"message": itemMessageKeys, "function_call": itemCallKeys,
		"function_call_output": itemCallOutputKeys, "reasoning": itemReasoningKeys}[typ]
	if allowed == nil {
		if lenient {
			b.render += jsonBound(it, indent, 0) + argumentsBound(it, indent)
			return nil
		}
		return sluice.Invalid(p+".type", sluice.CodeInvalidValue,
			"Unsupported input item type %q in '%s': use message, function_call, function_call_output or reasoning.", typ, p)
	}
	if !lenient {
		for _, f := range it.Members {
			if !slices.Contains(allowed, f.Key) {
				return sluice.Invalid(p+"."+f.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s.%s", p, f.Key)
			}
		}
	}
	switch typ {
	case "message":
		role, ok := str(it.Get("role"))
		if !ok || !slices.Contains([]string{"user", "system", "developer", "assistant"}, role) {
			if lenient {
				b.render += jsonBound(it, indent, 0)
				return nil
			}
			return sluice.Invalid(p+".role", sluice.CodeInvalidValue, "'%s.role' must be user, system, developer or assistant.", p)
		}
		b.render += int64(len(role))
		content := it.Get("content")
		switch {
		case content != nil && content.Kind == String:
			b.text += int64(len(content.Str))
			b.render += int64(len(content.Str))
		case content != nil && content.Kind == Array:
			for j, part := range content.Items {
				if err := b.responsePart(part, fmt.Sprintf("%s.content[%d]", p, j), m, indent, lenient); err != nil {
					return err
				}
			}
		default:
			if lenient {
				if content != nil {
					b.render += jsonBound(content, indent, 0)
				}
				return nil
			}
			return sluice.Invalid(p+".content", sluice.CodeInvalidValue, "'%s.content' must be a string or an array of content parts.", p)
		}
	case "function_call":
		if !lenient {
			for _, k := range []string{"name", "arguments", "call_id"} {
				if _, ok := str(it.Get(k)); !ok {
					return sluice.Invalid(p+"."+k, sluice.CodeInvalidValue, "'%s.%s' must be a string.", p, k)
				}
			}
		}
		b.render += jsonBound(it, indent, 0) + argumentsBound(it, indent)
	case "function_call_output":
		out := it.Get("output")
		s, ok := str(out)
		switch {
		case ok: // rendered as the tool message's text, maybe as a JSON string
			b.text += int64(len(s))
			b.render += int64(len(s)) + strBound(s)
		case !lenient:
			return sluice.Invalid(p+".output", sluice.CodeInvalidValue, "'%s.output' must be a string.", p)
		case out != nil:
			b.render += jsonBound(out, indent, 0)
		}
		if !lenient {
			if _, ok := str(it.Get("call_id")); !ok {
				return sluice.Invalid(p+".call_id", sluice.CodeInvalidValue, "'%s.call_id' must be a string.", p)
			}
		}
	case "reasoning":
		b.render += jsonBound(it, indent, 0)
	}
	return nil
}

// responsePart adds one content part of a Responses message: its text, or
// its media kind's bound.
func (b *promptBound) responsePart(part *Value, p string, m *config.Model, indent int, lenient bool) error {
	if part.Kind != Object {
		if lenient {
			b.render += jsonBound(part, indent, 0)
			return nil
		}
		return sluice.Invalid(p, sluice.CodeInvalidValue, "'%s' must be a content part object.", p)
	}
	if !lenient {
		for _, f := range part.Members {
			if !slices.Contains(itemPartKeys, f.Key) {
				return sluice.Invalid(p+"."+f.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s.%s", p, f.Key)
			}
		}
	}
	typ, _ := str(part.Get("type"))
	var bound int64
	kind := ""
	switch typ {
	case "input_text", "output_text", "text", "refusal":
		key := "text"
		if typ == "refusal" {
			key = "refusal"
		}
		s, ok := str(part.Get(key))
		if !ok {
			if lenient {
				b.render += jsonBound(part, indent, 0)
				return nil
			}
			return sluice.Invalid(p+"."+key, sluice.CodeInvalidValue, "'%s.%s' must be a string.", p, key)
		}
		b.text += int64(len(s))
		b.render += int64(len(s))
		return nil
	case "input_image":
		bound, kind = m.Media.Image, "image"
	case "input_audio":
		bound, kind = m.Media.Audio, "audio"
	case "input_file":
		bound, kind = m.Media.File, "file"
	default:
		if lenient {
			b.render += jsonBound(part, indent, 0)
			return nil
		}
		return sluice.Invalid(p+".type", sluice.CodeInvalidValue, "Invalid content part type %q in '%s'.", typ, p)
	}
	if bound <= 0 {
		return sluice.Invalid(p, sluice.CodeUnsupportedParameter,
			"Model %s does not accept %s content: no token bound is configured for it.", m.Name, kind)
	}
	b.extra += bound
	return nil
}
