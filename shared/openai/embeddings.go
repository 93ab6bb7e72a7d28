package openai

import (
	"strconv"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// MaxEmbeddingInputs bounds the inputs of one embeddings request (OpenAI's
// limit: an input array of at most 2048 entries).
const MaxEmbeddingInputs = 2048

// MaxEmbeddingDimensions bounds `dimensions`. A real engine refuses more
// than its model's hidden size; the bound keeps a hostile value from asking
// any engine for a response of gigabytes.
const MaxEmbeddingDimensions = 16384

// embeddingFields is /v1/embeddings' allowlist: OpenAI's fields. Only the
// inputs change what the engine computes; they are the whole hold.
var embeddingFields = map[string]Field{
	"model":           {},
	"input":           {},
	"encoding_format": {check: oneOf("encoding_format", "float", "base64")},
	"dimensions":      {check: intIn("dimensions", 1, MaxEmbeddingDimensions)},
	"user":            {check: isString("user")},
}

// taskFor is the model task an endpoint needs.
func taskFor(endpoint string) string {
	if endpoint == sluice.EndpointEmbeddings {
		return config.TaskEmbed
	}
	return config.TaskGenerate
}

// checkTask refuses a request for a model of the other kind: an embeddings
// request to a generate model, a chat or completions request to an embed
// model.
func checkTask(endpoint, name string, m *config.Model) error {
	if taskFor(endpoint) == m.Task {
		return nil
	}
	if m.Task == config.TaskEmbed {
		return sluice.Invalid("model", sluice.CodeInvalidValue,
			"The model `%s` is an embedding model and is not supported in the %s endpoint; use /v1/embeddings.", name, endpoint)
	}
	return sluice.Invalid("model", sluice.CodeInvalidValue,
		"The model `%s` does not support embeddings; use an embedding model with /v1/embeddings.", name)
}

// embeddingsRequest bounds an embeddings request: every input counted (a
// batch of inputs runs each on its own), token ids exactly, strings by
// their bytes (no token is shorter than a byte); nothing is generated, so
// the completion bound is 0. An input that is certainly longer than the
// model's context is refused here; nearer cases are left to the engine.
func embeddingsRequest(tree *Value, m *config.Model, lim Limits) (*Request, error) {
	in := tree.Get("input")
	invalid := sluice.Invalid("input", sluice.CodeInvalidValue,
		"'input' must be a string, an array of strings, an array of token ids, or an array of token-id arrays.")
	req := &Request{Endpoint: sluice.EndpointEmbeddings, Model: m, NoCompletion: true, Choices: 1}
	floor := int64(max(lim.BytesPerTokenFloor, 1))
	add := func(i int, n int64, exact bool) error {
		if n == 0 {
			return sluice.Invalid(inputParam(in, i), sluice.CodeInvalidValue, "'%s' must not be empty.", inputParam(in, i))
		}
		least := n
		if !exact {
			least = n / floor
		}
		if least > int64(m.MaxModelLen) {
			return sluice.Invalid(inputParam(in, i), sluice.CodeContextLengthExceeded,
				"This model's maximum context length is %d tokens; input %d needs at least %d.", m.MaxModelLen, max(i, 0), least)
		}
		req.PromptBytes += n
		req.Prompts++
		return nil
	}
	switch {
	case in == nil || in.Kind == Null:
		return nil, sluice.Invalid("input", sluice.CodeMissingRequired, "Missing required parameter: 'input'.")
	case in.Kind == String:
		if err := add(-1, int64(len(in.Str)), false); err != nil {
			return nil, err
		}
	case in.Kind != Array:
		return nil, invalid
	case len(in.Items) == 0:
		return nil, sluice.Invalid("input", sluice.CodeInvalidValue, "'input' must not be empty.")
	case len(in.Items) > MaxEmbeddingInputs:
		return nil, sluice.Invalid("input", sluice.CodeInvalidValue, "'input' may hold at most %d inputs.", MaxEmbeddingInputs)
	default:
		switch in.Items[0].Kind {
		case String:
			for i, it := range in.Items {
				if it.Kind != String {
					return nil, invalid
				}
				if err := add(i, int64(len(it.Str)), false); err != nil {
					return nil, err
				}
			}
		case Number: // one input of token ids: the count is exact
			if !tokenIDs(in) {
				return nil, invalid
			}
			if err := add(-1, int64(len(in.Items)), true); err != nil {
				return nil, err
			}
		case Array:
			for i, it := range in.Items {
				if !tokenIDs(it) {
					return nil, invalid
				}
				if err := add(i, int64(len(it.Items)), true); err != nil {
					return nil, err
				}
			}
		default:
			return nil, invalid
		}
	}
	return req, nil
}

// inputParam names input i for an error ("input" for a single input).
func inputParam(in *Value, i int) string {
	if i < 0 || in == nil || in.Kind != Array {
		return "input"
	}
	return "input[" + strconv.Itoa(i) + "]"
}

func oneOf(name string, allowed ...string) func(*Value) error {
	return func(v *Value) error {
		for _, a := range allowed {
			if v.Kind == String && v.Str == a {
				return nil
			}
		}
		return sluice.Invalid(name, sluice.CodeInvalidValue, "%s must be one of %v.", name, allowed)
	}
}

func intIn(name string, lo, hi int64) func(*Value) error {
	return func(v *Value) error {
		n, err := strconv.ParseInt(string(v.Num), 10, 64)
		if v.Kind != Number || err != nil || n < lo || n > hi {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "%s must be an integer between %d and %d.", name, lo, hi)
		}
		return nil
	}
}

func isString(name string) func(*Value) error {
	return func(v *Value) error {
		if v.Kind != String {
			return sluice.Invalid(name, sluice.CodeInvalidValue, "Invalid type for '%s': expected a string.", name)
		}
		return nil
	}
}
