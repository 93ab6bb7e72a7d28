package enginetest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluice-ai/sluice/shared/config"
)

// Rendered is what an engine is asked to do by one request, as vLLM reads
// it: the prompt a chat template renders (or the prompts of a batch), and
// how many completions of how many tokens it may generate.
type Rendered struct {
	Text     string // the rendered prompt(s), special tokens written out
	Special  int64  // bytes of the special tokens written in Text
	Specials int64  // how many: one token each
	Media    config.MediaBounds
	Prompts  int64 // prompts run (a completions batch), 1 for chat
	Choices  int64 // max(n, best_of) per prompt
	MaxToken int64 // max_tokens per completion; 0: the rest of the context
}

// PromptTokens bounds the prompt's tokens: no token is shorter than a byte
// but the special ones, plus the media parts' bounds.
func (r Rendered) PromptTokens(m config.MediaBounds) int64 {
	return int64(len(r.Text)) - r.Special + r.Specials + r.Media.Image*m.Image + r.Media.Audio*m.Audio +
		r.Media.Video*m.Video + r.Media.File*m.File
}

// CompletionTokens bounds what the engine may generate.
func (r Rendered) CompletionTokens(maxModelLen int64) int64 {
	per := r.MaxToken
	if per == 0 {
		per = maxModelLen
	}
	return per * r.Choices * r.Prompts
}

// Render renders a parsed request body (DecodePython) for endpoint as a
// Llama 3.1-style chat template would: a header per message, tools as
// tojson(indent=indent) with their instructions, tool-call arguments parsed
// and dumped, guided-decoding schemas dumped (engines that prompt with the
// schema). Completions prompts are taken as they are, one BOS each.
func Render(endpoint string, body any, indent int) (Rendered, error) {
	d, ok := body.(*PyDict)
	if !ok {
		return Rendered{}, fmt.Errorf("body is not an object")
	}
	r := Rendered{Prompts: 1, Choices: 1}
	var b strings.Builder
	special := func(s string) { b.WriteString(s); r.Special += int64(len(s)); r.Specials++ }
	special("<|begin_of_text|>")
	if endpoint == "/v1/completions" {
		r.Prompts = 0
		switch p := d.Get("prompt").(type) {
		case string:
			b.WriteString(p)
			r.Prompts = 1
		case []any:
			if len(p) > 0 {
				if _, ids := p[0].(PyInt); ids {
					b.WriteString(strings.Repeat("t", len(p))) // a token id is one token
					r.Prompts = 1
					break
				}
			}
			for i, it := range p {
				if i > 0 {
					special("<|begin_of_text|>")
				}
				switch x := it.(type) {
				case string:
					b.WriteString(x)
				case []any:
					b.WriteString(strings.Repeat("t", len(x)))
				}
				r.Prompts++
			}
		}
	} else {
		msgs, _ := d.Get("messages").([]any)
		if tools, ok := d.Get("tools").([]any); ok && len(tools) > 0 {
			special("<|start_header_id|>")
			b.WriteString("system")
			special("<|end_header_id|>")
			b.WriteString("\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n")
			b.WriteString("Given the following functions, please respond with a JSON for a function call with its proper arguments " +
				"that best answers the given prompt.\n\nRespond in the format {\"name\": function name, \"parameters\": " +
				"dictionary of argument name and its value}. Do not use variables.\n\n")
			for _, t := range tools {
				b.WriteString(Dumps(t, indent, false))
				b.WriteString("\n\n")
			}
			special("<|eot_id|>")
		}
		for _, m := range msgs {
			md, _ := m.(*PyDict)
			role, _ := md.Get("role").(string)
			special("<|start_header_id|>")
			b.WriteString(role)
			if name, ok := md.Get("name").(string); ok {
				b.WriteString(" " + name)
			}
			special("<|end_header_id|>")
			b.WriteString("\n\n")
			for _, k := range []string{"reasoning_content", "reasoning", "tool_call_id", "refusal"} {
				if s, ok := md.Get(k).(string); ok {
					b.WriteString(s + "\n")
				}
			}
			switch c := md.Get("content").(type) {
			case string:
				if role == "tool" {
					b.WriteString(Dumps(c, -1, false))
				} else {
					b.WriteString(c)
				}
			case []any:
				for _, part := range c {
					pd, _ := part.(*PyDict)
					switch pd.Get("type") {
					case "text":
						s, _ := pd.Get("text").(string)
						b.WriteString(s)
					case "refusal":
						s, _ := pd.Get("refusal").(string)
						b.WriteString(s)
					case "image_url", "image":
						r.Media.Image++
					case "input_audio", "audio_url":
						r.Media.Audio++
					case "video_url":
						r.Media.Video++
					case "file":
						r.Media.File++
					}
				}
			}
			calls, _ := md.Get("tool_calls").([]any)
			for _, call := range calls {
				cd, _ := call.(*PyDict)
				fn, _ := cd.Get("function").(*PyDict)
				name, _ := fn.Get("name").(string)
				args := fn.Get("arguments")
				if s, ok := args.(string); ok { // vLLM hands templates the parsed arguments
					if parsed, err := DecodePython([]byte(s)); err == nil {
						args = parsed
					}
				}
				b.WriteString(`{"name": "` + name + `", "parameters": ` + Dumps(args, indent, false) + "}")
			}
			special("<|eot_id|>")
		}
		special("<|start_header_id|>")
		b.WriteString("assistant")
		special("<|end_header_id|>")
		b.WriteString("\n\n")
	}
	for _, k := range []string{"response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs"} {
		if v := d.Get(k); v != nil {
			b.WriteString(Dumps(v, indent, false))
		}
	}
	r.Text = b.String()
	n := pyInt(d.Get("n"), 1)
	r.Choices = max(n, pyInt(d.Get("best_of"), n), 1)
	r.MaxToken = pyInt(d.Get("max_completion_tokens"), pyInt(d.Get("max_tokens"), 0))
	return r, nil
}

func pyInt(v any, def int64) int64 {
	switch x := v.(type) {
	case PyInt:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err == nil {
			return n
		}
	case float64:
		return int64(x)
	}
	return def
}

// Hold is what admission held for a job, in tokens.
type Hold struct{ Prompt, Completion int64 }

// Covers reports nil when hold covers everything the engine may count for
// r (prompt and completion) and, when known, what it did count (usage).
func Covers(hold Hold, r Rendered, m *config.Model, usage *Usage) error {
	p, c := r.PromptTokens(m.Media), r.CompletionTokens(int64(m.MaxModelLen))
	var errs []string
	if p > hold.Prompt {
		errs = append(errs, fmt.Sprintf("the engine renders a prompt of up to %d tokens, held %d", p, hold.Prompt))
	}
	if c > hold.Completion {
		errs = append(errs, fmt.Sprintf("the engine may generate %d tokens (%d prompts × %d choices × %d), held %d",
			c, r.Prompts, r.Choices, r.MaxToken, hold.Completion))
	}
	if usage != nil && usage.Prompt+usage.Completion > hold.Prompt+hold.Completion {
		errs = append(errs, fmt.Sprintf("the engine counted %d+%d tokens, held %d+%d", usage.Prompt, usage.Completion, hold.Prompt, hold.Completion))
	}
	if len(errs) > 0 {
		return fmt.Errorf("hold does not cover the engine's work: %s", strings.Join(errs, "; "))
	}
	return nil
}
