package openai

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// promptBound is what the engine can count for a request's prompt.
type promptBound struct {
	text     int64 // bytes of message text (or prompt strings / token ids): the least the prompt can be
	longest  int64 // the longest single prompt's text (batched completions)
	shortest int64 // the shortest's: it leaves the most room for a completion
	render   int64 // bytes the template can render in all: text, names, tool calls, tools, schemas
	extra    int64 // tokens beyond bytes: template and tools overhead, media parts
	prompts  int64 // prompts the engine runs (a completions batch); 1 for chat
}

// messageKeys are the keys a chat message may carry; the template sees only
// these, and each one it can render is in the bound.
var messageKeys = []string{"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content",
	"reasoning", "refusal", "function_call", "audio"}

// partKeys are the keys a content part may carry.
var partKeys = []string{"type", "text", "refusal", "image_url", "input_audio", "audio_url", "video_url", "file"}

// MaxPrompts bounds the prompts of one batched completions request.
const MaxPrompts = 128

func str(v *Value) (string, bool) {
	if v == nil || v.Kind != String {
		return "", false
	}
	return v.Str, true
}

// chatBound walks the messages and every other rendered field.
func chatBound(body *Value, route Route, m *config.Model, lim Limits) (promptBound, error) {
	b := promptBound{prompts: 1, extra: m.TemplateOverheadTokens}
	msgs := body.Get("messages")
	if msgs == nil || msgs.Kind == Null {
		return b, sluice.Invalid("messages", sluice.CodeMissingRequired, "Missing required parameter: 'messages'.")
	}
	if msgs.Kind != Array {
		return b, sluice.Invalid("messages", sluice.CodeInvalidValue, "'messages' must be an array of messages.")
	}
	if len(msgs.Items) == 0 {
		return b, sluice.Invalid("messages", sluice.CodeInvalidValue, "'messages' must contain at least one message.")
	}
	if lim.MaxMessages > 0 && len(msgs.Items) > lim.MaxMessages {
		return b, sluice.Invalid("messages", sluice.CodeInvalidValue, "'messages' may hold at most %d messages.", lim.MaxMessages)
	}
	indent := m.TemplateJSONIndent
	for i, msg := range msgs.Items {
		p := fmt.Sprintf("messages[%d]", i)
		if msg.Kind != Object {
			return b, sluice.Invalid(p, sluice.CodeInvalidValue, "'%s' must be an object.", p)
		}
		for _, f := range msg.Members {
			if !slices.Contains(messageKeys, f.Key) {
				return b, sluice.Invalid(p+"."+f.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s.%s", p, f.Key)
			}
		}
		role, ok := str(msg.Get("role"))
		if msg.Get("role") == nil {
			return b, sluice.Invalid(p+".role", sluice.CodeMissingRequired, "Missing required parameter: '%s.role'.", p)
		}
		switch {
		case !ok:
			return b, sluice.Invalid(p+".role", sluice.CodeInvalidValue, "Invalid type for '%s.role': expected a string.", p)
		case !slices.Contains([]string{"system", "user", "assistant", "tool", "developer", "function"}, role):
			return b, sluice.Invalid(p+".role", sluice.CodeInvalidValue, "Invalid value %q for '%s.role'.", role, p)
		}
		b.render += int64(len(role))
		for _, k := range []string{"name", "tool_call_id", "reasoning_content", "reasoning", "refusal"} {
			if v := msg.Get(k); v != nil && v.Kind != Null {
				s, ok := str(v)
				if !ok {
					return b, sluice.Invalid(p+"."+k, sluice.CodeInvalidValue, "Invalid type for '%s.%s': expected a string.", p, k)
				}
				b.render += int64(len(s))
			}
		}
		for _, k := range []string{"tool_calls", "function_call", "audio"} {
			if v := msg.Get(k); v != nil && v.Kind != Null {
				b.render += jsonBound(v, indent, 0)
				b.render += argumentsBound(v, indent)
			}
		}
		content := msg.Get("content")
		switch {
		case content == nil || content.Kind == Null:
			if role != "assistant" { // an assistant turn may carry only tool calls
				return b, sluice.Invalid(p+".content", sluice.CodeMissingRequired, "Missing required parameter: '%s.content'.", p)
			}
		case content.Kind == String:
			b.text += int64(len(content.Str))
			b.render += int64(len(content.Str))
			if role == "tool" { // tool results may be rendered as JSON strings
				b.render += strBound(content.Str)
			}
		case content.Kind == Array:
			for j, part := range content.Items {
				if err := b.part(part, fmt.Sprintf("%s.content[%d]", p, j), m); err != nil {
					return b, err
				}
			}
		default:
			return b, sluice.Invalid(p+".content", sluice.CodeInvalidValue, "'%s.content' must be a string or an array of content parts.", p)
		}
	}
	if t := body.Get("tools"); t != nil && t.Kind == Array && len(t.Items) > 0 {
		b.extra += m.ToolsOverheadTokens
	}
	b.render += renderedBytes(route, body, indent)
	b.longest, b.shortest = b.text, b.text
	return b, nil
}

// part adds one content part: its text, or its media kind's bound.
func (b *promptBound) part(part *Value, p string, m *config.Model) error {
	if part.Kind != Object {
		return sluice.Invalid(p, sluice.CodeInvalidValue, "'%s' must be a content part object.", p)
	}
	for _, f := range part.Members {
		if !slices.Contains(partKeys, f.Key) {
			return sluice.Invalid(p+"."+f.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s.%s", p, f.Key)
		}
	}
	typ, _ := str(part.Get("type"))
	var bound int64
	kind := ""
	switch typ {
	case "text", "refusal":
		s, ok := str(part.Get(typ))
		if !ok {
			return sluice.Invalid(p+"."+typ, sluice.CodeInvalidValue, "'%s.%s' must be a string.", p, typ)
		}
		b.text += int64(len(s))
		b.render += int64(len(s))
		return nil
	case "image_url":
		bound, kind = m.Media.Image, "image"
	case "input_audio", "audio_url":
		bound, kind = m.Media.Audio, "audio"
	case "video_url":
		bound, kind = m.Media.Video, "video"
	case "file":
		bound, kind = m.Media.File, "file"
	default:
		return sluice.Invalid(p+".type", sluice.CodeInvalidValue, "Invalid content part type %q in '%s'.", typ, p)
	}
	if bound <= 0 {
		return sluice.Invalid(p, sluice.CodeUnsupportedParameter,
			"Model %s does not accept %s content: no token bound is configured for it.", m.Name, kind)
	}
	b.extra += bound
	return nil
}

// argumentsBound adds the tool-call arguments a template may render parsed:
// OpenAI sends them as a JSON string, vLLM hands templates the object.
func argumentsBound(v *Value, indent int) int64 {
	var n int64
	var walk func(v *Value)
	walk = func(v *Value) {
		switch v.Kind {
		case Array:
			for _, it := range v.Items {
				walk(it)
			}
		case Object:
			for _, m := range v.Members {
				if m.Key == "arguments" && m.Val.Kind == String {
					if inner, err := Decode([]byte(m.Val.Str)); err == nil {
						n += jsonBound(inner, indent, 0)
					}
					continue
				}
				walk(m.Val)
			}
		}
	}
	walk(v)
	return n
}

// completionBound bounds a completions prompt: a string, a batch of
// strings, token ids, or a batch of token-id lists. The engine runs each
// prompt of a batch on its own.
func completionBound(body *Value, route Route, m *config.Model) (promptBound, error) {
	b := promptBound{prompts: 1}
	p := body.Get("prompt")
	invalid := sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' must be a string, an array of strings, or an array of token ids.")
	empty := sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' must not be empty.")
	b.shortest = -1
	add := func(n int64) {
		b.text += n
		b.longest = max(b.longest, n)
		if b.shortest < 0 || n < b.shortest {
			b.shortest = n
		}
	}
	switch {
	case p == nil || p.Kind == Null:
		return b, sluice.Invalid("prompt", sluice.CodeMissingRequired, "Missing required parameter: 'prompt'.")
	case p.Kind == String:
		if p.Str == "" {
			return b, empty
		}
		add(int64(len(p.Str)))
	case p.Kind == Array:
		if len(p.Items) == 0 {
			return b, empty
		}
		switch p.Items[0].Kind {
		case String:
			for _, it := range p.Items {
				if it.Kind != String {
					return b, invalid
				}
				add(int64(len(it.Str)))
			}
			b.prompts = int64(len(p.Items))
		case Number:
			if !tokenIDs(p) {
				return b, invalid
			}
			add(int64(len(p.Items))) // token ids: the count is exact
		case Array:
			for _, it := range p.Items {
				if len(it.Items) == 0 || !tokenIDs(it) {
					return b, invalid
				}
				add(int64(len(it.Items)))
			}
			b.prompts = int64(len(p.Items))
		default:
			return b, invalid
		}
	default:
		return b, invalid
	}
	if b.prompts > MaxPrompts {
		return b, sluice.Invalid("prompt", sluice.CodeInvalidValue, "'prompt' may hold at most %d prompts.", MaxPrompts)
	}
	b.render = b.text + renderedBytes(route, body, m.TemplateJSONIndent)
	return b, nil
}

func tokenIDs(v *Value) bool {
	if v.Kind != Array {
		return false
	}
	for _, it := range v.Items {
		var id uint32
		if it.Kind != Number || json.Unmarshal([]byte(it.Num), &id) != nil {
			return false
		}
	}
	return true
}
