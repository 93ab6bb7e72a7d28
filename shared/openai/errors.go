// Package openai is the OpenAI wire format as Sluice serves it: request
// parsing and validation, the error shape with its one kind→status map, and
// server-sent events.
package openai

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// status is the one map from error kind to HTTP status.
var status = map[sluice.Kind]int{
	sluice.KindInternal:         http.StatusInternalServerError,
	sluice.KindInvalid:          http.StatusBadRequest,
	sluice.KindUnauthenticated:  http.StatusUnauthorized,
	sluice.KindPermissionDenied: http.StatusForbidden,
	sluice.KindNotFound:         http.StatusNotFound,
	sluice.KindConflict:         http.StatusConflict,
	sluice.KindTooLarge:         http.StatusRequestEntityTooLarge,
	sluice.KindRateLimited:      http.StatusTooManyRequests,
	sluice.KindQuota:            http.StatusTooManyRequests,
	sluice.KindUnavailable:      http.StatusServiceUnavailable,
	sluice.KindTimeout:          http.StatusGatewayTimeout,
	sluice.KindEngine:           http.StatusBadGateway,
	sluice.KindCancelled:        StatusCancelled,
}

// StatusCancelled is the status of a cancelled job (nginx's "client closed
// request"; net/http names none).
const StatusCancelled = 499

// Status is the HTTP status for an error.
func Status(err error) int {
	e := sluice.AsError(err)
	if e.Kind == sluice.KindUpstream && e.Status >= 400 {
		return e.Status
	}
	if s, ok := status[e.Kind]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// typeFor is OpenAI's error.type for a status.
func typeFor(kind sluice.Kind, st int) string {
	switch {
	case kind == sluice.KindQuota:
		return "insufficient_quota"
	case kind == sluice.KindRateLimited:
		return "requests"
	case kind == sluice.KindPermissionDenied:
		return "permission_error"
	case kind == sluice.KindUpstream && st == http.StatusTooManyRequests:
		return "server_error" // the engine is busy: not the client's fault
	case st >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// Body converts an error to the OpenAI error object a client may see.
func Body(err error) (int, sluice.ErrorBody) {
	e := sluice.AsError(err)
	st := Status(e)
	b := sluice.ErrorBody{Message: e.Message, Type: typeFor(e.Kind, st)}
	if e.Param != "" {
		b.Param = e.Param
	}
	if e.Code != "" {
		b.Code = e.Code
	}
	return st, b
}

// EncodeError is the stored form of a job's error: the OpenAI error object
// as JSON. The queue stores it (injected as redisq.Options.EncodeError) and
// hands it to clients verbatim.
func EncodeError(e *sluice.Error) []byte {
	_, b := Body(e)
	j, _ := json.Marshal(b)
	return j
}

// WriteError answers with the OpenAI error shape. Internal causes go to the
// log with the request id; the client sees only the safe message.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	st, b := Body(err)
	if st >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", slog.Int("status", st),
			slog.String("request_id", w.Header().Get("X-Request-Id")), slog.String("err", err.Error()))
	}
	WriteJSON(w, st, map[string]any{"error": b})
}

// WriteRawError answers with an already-built error object.
func WriteRawError(w http.ResponseWriter, st int, b sluice.ErrorBody) {
	WriteJSON(w, st, map[string]any{"error": b})
}

// WriteJSON writes v as the response body.
func WriteJSON(w http.ResponseWriter, st int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st)
	json.NewEncoder(w).Encode(v) //nolint:errcheck // the client may be gone
}

// UpstreamError turns an engine's error answer into the error a client sees:
// the engine's status and message, OpenAI's type and code (vLLM puts the
// status in code and uses its own type names; older builds used a flat
// {"object":"error"} shape).
func UpstreamError(st int, body []byte) *sluice.Error {
	var wrapped struct {
		Error *struct {
			Message string `json:"message"`
			Param   any    `json:"param"`
		} `json:"error"`
		Message string `json:"message"`
	}
	msg := ""
	var param any
	if json.Unmarshal(body, &wrapped) == nil {
		if wrapped.Error != nil {
			msg, param = wrapped.Error.Message, wrapped.Error.Param
		} else {
			msg = wrapped.Message
		}
	}
	if msg == "" {
		msg = http.StatusText(st)
	}
	e := &sluice.Error{Kind: sluice.KindUpstream, Status: st, Message: msg}
	e.Param, _ = param.(string) // OpenAI's param is a field name or null
	switch {
	case st == http.StatusBadRequest && strings.Contains(strings.ToLower(msg), "context length"):
		e.Code, e.Param = sluice.CodeContextLengthExceeded, "messages"
	case st == http.StatusNotFound:
		e.Code = sluice.CodeModelNotFound
	case st == http.StatusTooManyRequests:
		e.Code = sluice.CodeNoCapacity
	case st >= 500:
		e.Code = sluice.CodeServiceUnavailable
	}
	return e
}
