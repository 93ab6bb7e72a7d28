package openai

import (
	"net/http"
)

// SSE writes server-sent events and flushes each one.
type SSE struct {
	w http.ResponseWriter
	f http.Flusher
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
	buf = append(buf, "data: "...)
	buf = append(buf, payload...)
	buf = append(buf, '\n', '\n')
	_, err := s.w.Write(buf)
	s.flush()
	return err
}

// Done sends the final [DONE] event.
func (s *SSE) Done() error { return s.Data([]byte("[DONE]")) }

func (s *SSE) flush() {
	if s.f != nil {
		s.f.Flush()
	}
}
