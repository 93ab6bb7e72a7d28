package openai

import (
	"encoding/json"
	"net/http"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// SSE writes server-sent events and flushes each one.
type SSE struct {
	w http.ResponseWriter
	f http.Flusher
	// Named: each event goes out as the Responses API sends it, an
	// "event:" line naming the payload's type before its data, and the
	// stream ends without [DONE].
	Named bool
}

// StartSSE sends the event-stream headers.
func StartSSE(w http.ResponseWriter) *SSE {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	s := &SSE{w: w, f: f}
	s.flush()
	return s
}

// Data sends one "data: ..." event.
func (s *SSE) Data(payload []byte) error {
	buf := make([]byte, 0, len(payload)+8)
	if s.Named {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(payload, &t) == nil && t.Type != "" {
			buf = append(buf, "event: "...)
			buf = append(buf, t.Type...)
			buf = append(buf, '\n')
		}
	}
	buf = append(buf, "data: "...)
	buf = append(buf, payload...)
	buf = append(buf, '\n', '\n')
	_, err := s.w.Write(buf)
	s.flush()
	return err
}

// Error sends an error object as an event, as OpenAI does when a stream
// fails after its headers went out.
func (s *SSE) Error(b sluice.ErrorBody) error {
	j, _ := json.Marshal(map[string]any{"error": b})
	return s.Data(j)
}

// Done sends the final [DONE] event (none for a Named stream).
func (s *SSE) Done() error {
	if s.Named {
		return nil
	}
	return s.Data([]byte("[DONE]"))
}

func (s *SSE) flush() {
	if s.f != nil {
		s.f.Flush()
	}
}
