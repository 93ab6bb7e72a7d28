package config

import (
	"errors"
	"fmt"
	"slices"
)

// EngineInput is what a model's engine makes of a request beyond its message
// text, so admission can hold a true upper bound of what the engine will
// count (shared/openai). Its keys sit on the model, beside max_model_len.
type EngineInput struct {
	// TemplateOverheadTokens: tokens the chat template adds once per request
	// (preambles, a default system prompt, special tokens); default 128, at
	// least 1. Per-message tokens are admission.message_overhead_tokens.
	TemplateOverheadTokens int64 `yaml:"template_overhead_tokens"`
	// ToolsOverheadTokens: tokens the template adds when a request carries
	// tools (instructions on how to call them); default 512.
	ToolsOverheadTokens int64 `yaml:"tools_overhead_tokens"`
	// TemplateJSONIndent: the indent the template renders tool and schema
	// JSON with (tojson(indent=N)); default 4. The bound assumes this indent
	// two levels deeper than the value's own nesting.
	TemplateJSONIndent int `yaml:"template_json_indent"`
	// Media bounds the tokens of one non-text content part; a part of a kind
	// whose bound is 0 (the default for all) is refused with a 400.
	Media MediaBounds `yaml:"media"`
	// Allow lists request fields Sluice otherwise refuses because their cost
	// cannot be bounded (AllowableFields); an allowed field's JSON bytes are
	// added to the prompt bound. Only for engines whose operator trusts them.
	Allow []string `yaml:"allow"`
}

// MediaBounds are tokens per content part, by kind; 0 refuses the kind.
type MediaBounds struct {
	Image int64 `yaml:"image"` // image_url / image parts
	Audio int64 `yaml:"audio"` // input_audio / audio_url parts
	Video int64 `yaml:"video"` // video_url parts
	File  int64 `yaml:"file"`  // file parts
}

// AllowableFields are the request fields refused unless a model's allow
// list names them: each can make the engine render or compute far more than
// the request's own bytes say.
var AllowableFields = []string{"chat_template", "chat_template_kwargs", "documents", "prompt_embeds",
	"mm_processor_kwargs", "vllm_xargs", "echo", "use_beam_search"}

// Allows reports whether field is on the model's allow list.
func (e EngineInput) Allows(field string) bool { return slices.Contains(e.Allow, field) }

func (e *EngineInput) applyDefaults() {
	def(&e.TemplateOverheadTokens, 128)
	def(&e.ToolsOverheadTokens, 512)
	def(&e.TemplateJSONIndent, 4)
}

func (e *EngineInput) validate(where string) error {
	var errs []error
	if e.TemplateOverheadTokens < 1 {
		errs = append(errs, fmt.Errorf("%s.template_overhead_tokens: must be at least 1", where))
	}
	if e.ToolsOverheadTokens < 0 {
		errs = append(errs, fmt.Errorf("%s.tools_overhead_tokens: must not be negative", where))
	}
	if e.TemplateJSONIndent < 0 || e.TemplateJSONIndent > 16 {
		errs = append(errs, fmt.Errorf("%s.template_json_indent: must be 0..16", where))
	}
	if e.Media.Image < 0 || e.Media.Audio < 0 || e.Media.Video < 0 || e.Media.File < 0 {
		errs = append(errs, fmt.Errorf("%s.media: token bounds must not be negative", where))
	}
	for _, f := range e.Allow {
		if !slices.Contains(AllowableFields, f) {
			errs = append(errs, fmt.Errorf("%s.allow: %q is not one of %v", where, f, AllowableFields))
		}
	}
	return errors.Join(errs...)
}
