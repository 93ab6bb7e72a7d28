package sluice

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the HTTP layer; shared/openai maps each kind to
// one status and one OpenAI error type.
type Kind int

// The error kinds. Each has exactly one HTTP status (see openai.Status).
const (
	KindInternal         Kind = iota // 500: a bug or an unexpected dependency failure
	KindInvalid                      // 400: the request is malformed or out of range
	KindUnauthenticated              // 401: no, malformed, unknown or revoked credential
	KindPermissionDenied             // 403: authenticated, but not allowed
	KindNotFound                     // 404: no such object (or not the caller's)
	KindConflict                     // 409: the object's state forbids the change
	KindTooLarge                     // 413: the body exceeds the configured limit
	KindRateLimited                  // 429: a rate limit refused the request
	KindQuota                        // 429: nothing pays for the request
	KindUnavailable                  // 503: no capacity or a dependency is down
	KindTimeout                      // 504: the deadline passed
	KindUpstream                     // the engine's own answer, status carried in Error.Status
	KindEngine                       // 502: the inference engine failed the job
	KindCancelled                    // 499: the client cancelled the job
)

// Wire codes shown to clients in error.code, spelled as OpenAI spells them
// where OpenAI has one.
const (
	CodeInvalidAPIKey         = "invalid_api_key"
	CodeModelNotFound         = "model_not_found"
	CodeContextLengthExceeded = "context_length_exceeded"
	CodeRateLimitExceeded     = "rate_limit_exceeded"
	CodeInsufficientQuota     = "insufficient_quota"
	CodePermissionDenied      = "permission_denied"
	CodeNotFound              = "not_found"
	CodeRequestTooLarge       = "request_too_large"
	CodeInvalidJSON           = "invalid_json"
	CodeInvalidValue          = "invalid_value"
	CodeMissingRequired       = "missing_required_parameter"
	CodeNoCapacity            = "no_capacity"
	CodeDeadlineExceeded      = "deadline_exceeded"
	CodeServiceUnavailable    = "service_unavailable"
	CodeConflict              = "conflict"
	CodeInternal              = "internal_error"
	CodeMFARequired           = "mfa_required"              // log in again with a TOTP or recovery code
	CodeCancelled             = "cancelled"                 // the job was cancelled (HTTP 499)
	CodeStreamInterrupted     = "stream_interrupted"        // output was sent, then the job could not finish
	CodeInputMissing          = "input_missing"             // an async job's stored input is gone
	CodeInvalidCredentials    = "invalid_credentials"       // wrong email or password
	CodeInvalidRefreshToken   = "invalid_refresh_token"     // refresh token unknown, reused or revoked
	CodeInvalidMFACode        = "invalid_mfa_code"          // wrong TOTP or recovery code
	CodeReauthRequired        = "reauthentication_required" // a sensitive change needs the password again
	// CodeDuplicateKey: a request body names a key twice, or two keys that
	// differ only by case (the engine and Sluice would read different values).
	CodeDuplicateKey = "duplicate_key"
	// CodeUnknownParameter: a field not on the route's allowlist, as OpenAI
	// answers an unrecognized argument.
	CodeUnknownParameter = "unknown_parameter"
	// CodeUnsupportedParameter: a known field (or content part) whose cost
	// Sluice cannot bound, refused unless the model's configuration allows it.
	CodeUnsupportedParameter = "unsupported_parameter"
	// CodeEngineError: the engine failed while running the job (it went
	// unhealthy with the request in flight); not retried on another engine.
	CodeEngineError = "engine_error"
	// CodeMaxAttempts: the job failed on the engine jobs.max_attempts times.
	CodeMaxAttempts = "max_attempts_exceeded"
)

// Error is Sluice's one error type. Message is safe to show a client; Err is
// the cause and goes to logs only.
type Error struct {
	Kind    Kind
	Code    string // wire code, e.g. CodeModelNotFound; empty means none
	Message string // safe for clients
	Param   string // the offending request field, if any
	Status  int    // only for KindUpstream: the engine's HTTP status
	Err     error  // internal cause, never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %v", e.Message, e.Err)
	}
	return e.Message
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a client-safe, formatted message.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a 400 about one request field.
func Invalid(param, code, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Code: code, Param: param, Message: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected cause; clients see only "Internal error.".
func Internal(err error) *Error {
	return &Error{Kind: KindInternal, Code: CodeInternal, Message: "Internal error.", Err: err}
}

// Unavailable wraps a dependency failure as a 503.
func Unavailable(msg string, err error) *Error {
	return &Error{Kind: KindUnavailable, Code: CodeServiceUnavailable, Message: msg, Err: err}
}

// ErrNotFound is the sentinel the storage packages return for a missing row.
var ErrNotFound = &Error{Kind: KindNotFound, Code: CodeNotFound, Message: "Not found."}

// ErrUnauthenticated is returned for any credential that cannot be used. One
// message for every cause, so a caller learns nothing about which check failed.
var ErrUnauthenticated = &Error{Kind: KindUnauthenticated, Code: CodeInvalidAPIKey,
	Message: "Incorrect API key provided."}

// KindOf reports the kind of err, KindInternal for foreign errors.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// AsError returns err as an *Error, wrapping foreign errors as internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Internal(err)
}
