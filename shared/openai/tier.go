package openai

import (
	"bytes"
	"slices"

	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// ServiceTierField is the allowlist entry of OpenAI's service_tier: any
// route that takes it (chat, completions, responses) lists it under
// "service_tier", and Sluice consumes it: the strict parse checks its
// value, ServiceTier reads it, and it never reaches the engine (vLLM has
// no such field; its own `priority` is set by the worker, never the
// client).
var ServiceTierField = Field{kind: consumed, check: checkServiceTier}

func checkServiceTier(v *Value) error {
	if v.Kind != String || !slices.Contains(config.ServiceTierValues, v.Str) {
		return sluice.Invalid("service_tier", sluice.CodeInvalidValue,
			"Invalid value for 'service_tier': expected one of 'auto', 'default', 'flex' or 'priority'.")
	}
	return nil
}

// ServiceTier reads a checked body's service_tier: "" when absent or
// null, else one of config.ServiceTierValues (400 param service_tier for
// anything else).
func ServiceTier(body *Value) (string, error) {
	v := body.Get("service_tier")
	if v == nil || v.Kind == Null {
		return "", nil
	}
	if err := checkServiceTier(v); err != nil {
		return "", err
	}
	return v.Str, nil
}

// JobServiceTier is the tier a request runs at for its service_tier value:
// flex and priority as asked, anything else (absent, auto, default)
// sluice.TierDefault.
func JobServiceTier(requested string) string {
	switch requested {
	case sluice.TierFlex, sluice.TierPriority:
		return requested
	}
	return sluice.TierDefault
}

var (
	tierKey  = []byte(`"service_tier":`)
	respOpen = []byte(`"response":{`)
)

// EchoServiceTier sets the service_tier member of a response body or
// stream chunk (a chat.completion, its chunks, a text_completion) to the
// tier that served it, as OpenAI does; in a Responses API event the
// member sits in its "response" object. It works on bytes, without
// decoding: inside a JSON string a quote is escaped, so `"service_tier":`
// can only be a key; the engine's own (null) is replaced, and a body
// without one gets it first. A body that is not an object, or a Responses
// event without a response object (a delta), is returned as it is.
func EchoServiceTier(b []byte, tier string) []byte {
	if tier == "" || tier == sluice.TierBatch {
		tier = sluice.TierDefault // OpenAI's tiers only: a batch line says default
	}
	b = bytes.TrimSpace(b)
	if len(b) < 2 || b[0] != '{' {
		return b
	}
	val := []byte(`"` + tier + `"`)
	if i := bytes.Index(b, tierKey); i >= 0 {
		start := i + len(tierKey)
		for start < len(b) && (b[start] == ' ') {
			start++
		}
		end := valueEnd(b, start)
		if end < 0 {
			return b
		}
		out := make([]byte, 0, len(b)+len(val))
		out = append(append(append(out, b[:start]...), val...), b[end:]...)
		return out
	}
	at := 1 // just inside the object
	if bytes.Contains(b, []byte(`"type":"response.`)) {
		j := bytes.Index(b, respOpen)
		if j < 0 {
			return b
		}
		at = j + len(respOpen)
	}
	out := make([]byte, 0, len(b)+len(tierKey)+len(val)+1)
	out = append(append(append(append(out, b[:at]...), tierKey...), val...), b[at:]...)
	if at < len(b) && b[at] != '}' {
		out = append(append(out[:at+len(tierKey)+len(val)], ','), b[at:]...)
	}
	return out
}

// valueEnd returns the end of the scalar JSON value (string, null, number,
// literal) that starts at b[i], or -1.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	if b[i] == '"' {
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	}
	for j := i; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\n':
			return j
		case '{', '[':
			return -1
		}
	}
	return -1
}

// AllowServiceTier checks a request's service_tier (as Request.ServiceTier
// holds it) against what the caller's subscription tier may use
// (tiers.<name>.service_tiers) and returns the job's service tier. A tier
// not allowed is 403 permission_denied, param service_tier; an absent one
// is always allowed (it is the tier's own class and price).
func AllowServiceTier(cfg *config.Config, tier, requested string) (string, error) {
	if requested != "" && !slices.Contains(cfg.AllowedServiceTiers(tier), requested) {
		return "", &sluice.Error{Kind: sluice.KindPermissionDenied, Code: sluice.CodePermissionDenied, Param: "service_tier",
			Message: "service_tier '" + requested + "' is not available on your plan (" + tier + ")."}
	}
	return JobServiceTier(requested), nil
}
