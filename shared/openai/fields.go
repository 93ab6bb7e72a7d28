package openai

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// A field's role in the prompt bound.
type fieldKind uint8

const (
	plain    fieldKind = iota // decoding parameters: no prompt bytes
	rendered                  // the template (or guided decoding) renders its JSON: bytes in the bound
	consumed                  // Sluice reads it and never sends it to the engine (service_tier)
)

// Consumed reports whether the route's field name is Sluice's own: read
// from the request and dropped from what the engine gets.
func (r Route) Consumed(name string) bool { return r.Fields[name].kind == consumed }

// Field is one allowlisted request field: its check, and whether its bytes
// count in the prompt bound.
type Field struct {
	kind  fieldKind
	check func(v *Value) error // nil: any value (typed decoding checks the type)
}

// Route is the fields one engine route accepts. Every route that reaches an
// engine parses through one, so only fields on its list, re-encoded, ever
// reach the engine (invariant 9); other routes add a Route of their own.
type Route struct {
	Fields map[string]Field
	// NoAllow: a model's allow list (config.AllowableFields) does not
	// apply; every field must be on Fields (embeddings: none of those
	// fields means anything there).
	NoAllow bool
}

// Has reports whether name is on the route's list.
func (r Route) Has(name string) bool { _, ok := r.Fields[name]; return ok }

// Names lists the route's fields, sorted (for the docs and errors).
func (r Route) Names() []string { return slices.Sorted(maps.Keys(r.Fields)) }

// Routes are the engine routes' allowlists, by endpoint.
var Routes = map[string]Route{
	sluice.EndpointChat:       {Fields: merge(sampling, chatFields)},
	sluice.EndpointCompletion: {Fields: merge(sampling, completionFields)},
	sluice.EndpointEmbeddings: {Fields: embeddingFields, NoAllow: true},
}

func merge(ms ...map[string]Field) map[string]Field {
	out := map[string]Field{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// sampling are OpenAI's and vLLM's generation fields both routes share. Each
// that changes what the engine computes is bounded; the token budget itself
// (max_tokens, n, best_of) is in the hold.
var sampling = map[string]Field{
	"service_tier":                  ServiceTierField,
	"model":                         {},
	"max_tokens":                    {},
	"n":                             {},
	"stream":                        {},
	"stream_options":                {check: keys("stream_options", "include_usage", "continuous_usage_stats")},
	"temperature":                   {},
	"top_p":                         {},
	"frequency_penalty":             {check: numIn("frequency_penalty", -2, 2)},
	"presence_penalty":              {check: numIn("presence_penalty", -2, 2)},
	"logit_bias":                    {check: maxLen("logit_bias", 300)},
	"seed":                          {check: isInt("seed")},
	"stop":                          {check: maxLen("stop", 16)},
	"user":                          {},
	"top_k":                         {check: numIn("top_k", -1, 1<<20)},
	"min_p":                         {check: numIn("min_p", 0, 1)},
	"repetition_penalty":            {check: numOpen("repetition_penalty", 0, 2)},
	"length_penalty":                {check: numIn("length_penalty", -10, 10)},
	"stop_token_ids":                {check: maxLen("stop_token_ids", 64)},
	"include_stop_str_in_output":    {},
	"ignore_eos":                    {},
	"min_tokens":                    {check: numIn("min_tokens", 0, 1<<20)},
	"skip_special_tokens":           {},
	"spaces_between_special_tokens": {},
	"truncate_prompt_tokens":        {check: numIn("truncate_prompt_tokens", -1, 1<<30)},
	"prompt_logprobs":               {check: numIn("prompt_logprobs", 0, 20)},
	"allowed_token_ids":             {check: maxLen("allowed_token_ids", 4096)},
	"bad_words":                     {check: maxLen("bad_words", 64)},
	"add_special_tokens":            {},
	"return_tokens_as_token_ids":    {},
	"cache_salt":                    {},
	"response_format":               {kind: rendered},
	"guided_json":                   {kind: rendered},
	"guided_regex":                  {kind: rendered},
	"guided_choice":                 {kind: rendered},
	"guided_grammar":                {kind: rendered},
	"guided_decoding_backend":       {},
	"guided_whitespace_pattern":     {kind: rendered},
	"structured_outputs":            {kind: rendered},
}

var chatFields = map[string]Field{
	"messages":               {},
	"max_completion_tokens":  {},
	"logprobs":               {},
	"top_logprobs":           {check: numIn("top_logprobs", 0, 20)},
	"tools":                  {kind: rendered, check: maxLen("tools", 128)},
	"tool_choice":            {kind: rendered},
	"parallel_tool_calls":    {},
	"reasoning_effort":       {kind: rendered},
	"add_generation_prompt":  {},
	"continue_final_message": {},
}

var completionFields = map[string]Field{
	"prompt":   {},
	"best_of":  {},
	"logprobs": {check: numIn("logprobs", 0, 20)},
}

// checkFields refuses any top-level field not on the route's list (or, for
// the fields whose cost cannot be bounded, not allowed by the model), then
// runs each field's check.
func checkFields(route Route, body *Value, m *config.Model) error {
	for _, f := range body.Members {
		if !route.NoAllow && slices.Contains(config.AllowableFields, f.Key) {
			if !m.Allows(f.Key) {
				return sluice.Invalid(f.Key, sluice.CodeUnsupportedParameter,
					"'%s' is not supported for model %s: its cost cannot be bounded.", f.Key, m.Name)
			}
			continue
		}
		spec, ok := route.Fields[f.Key]
		if !ok {
			return sluice.Invalid(f.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s", f.Key)
		}
		if spec.check != nil && f.Val.Kind != Null {
			if err := spec.check(f.Val); err != nil {
				return err
			}
		}
	}
	return nil
}

// renderedBytes bounds what the template and guided decoding render from
// the body's non-message fields: rendered fields and allowed ones.
func renderedBytes(route Route, body *Value, indent int) int64 {
	var n int64
	for _, f := range body.Members {
		if route.Fields[f.Key].kind == rendered || slices.Contains(config.AllowableFields, f.Key) {
			n += jsonBound(f.Val, indent, 0)
		}
	}
	return n
}

func num(v *Value) (float64, bool) {
	if v.Kind != Number {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v.Num), 64)
	return f, err == nil
}

func numIn(name string, lo, hi float64) func(*Value) error {
	return func(v *Value) error {
		if f, ok := num(v); !ok || f < lo || f > hi {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "%s must be a number between %s and %s.", name, fmtNum(lo), fmtNum(hi))
		}
		return nil
	}
}

func numOpen(name string, lo, hi float64) func(*Value) error {
	return func(v *Value) error {
		if f, ok := num(v); !ok || f <= lo || f > hi {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "%s must be a number above %s and at most %s.", name, fmtNum(lo), fmtNum(hi))
		}
		return nil
	}
}

func isInt(name string) func(*Value) error {
	return func(v *Value) error {
		if _, err := strconv.ParseInt(string(v.Num), 10, 64); v.Kind != Number || err != nil {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "%s must be an integer.", name)
		}
		return nil
	}
}

// maxLen bounds a list's (or object's) entries; a single value counts one.
func maxLen(name string, most int) func(*Value) error {
	return func(v *Value) error {
		if len(v.Items) > most || len(v.Members) > most {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "%s may have at most %d entries.", name, most)
		}
		return nil
	}
}

// keys refuses an object member not named.
func keys(name string, allowed ...string) func(*Value) error {
	return func(v *Value) error {
		for _, m := range v.Members {
			if !slices.Contains(allowed, m.Key) {
				return sluice.Invalid(name+"."+m.Key, sluice.CodeUnknownParameter, "Unrecognized request argument supplied: %s.%s", name, m.Key)
			}
		}
		return nil
	}
}

func fmtNum(f float64) string { return fmt.Sprint(f) }
