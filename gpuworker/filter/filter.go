// Package filter redacts sensitive text (API keys, card numbers, e-mail
// addresses, custom patterns) from results before they reach Redis and the
// client, whole responses and streamed ones alike. It is off by default.
//
// Streams are the hard part: a key may arrive split over several chunks.
// Each choice's text is held back by up to filters.hold bytes: any match no
// longer than that which could still grow with the next chunk is held, so
// it is redacted whole when complete. Held text is released with the
// choice's finishing chunk.
package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sluice-ai/sluice/shared/config"
)

// Built-in patterns, bounded so every match fits the default hold.
const (
	apiKeyRE = `(?:sk-[A-Za-z0-9_\-]{20,100}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,100}|xox[abposr]-[A-Za-z0-9\-]{10,100})`
	cardRE   = `\b(?:\d[ \-]?){12,18}\d\b`
	emailRE  = `[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,4}\.[A-Za-z]{2,24}`
)

// Redactor applies one configuration's patterns. A nil *Redactor is off.
type Redactor struct {
	re     *regexp.Regexp
	groups []int    // submatch index of each pattern's group
	labels []string // replacement label of each pattern
	card   int      // index into groups of the card pattern, or -1
	hold   int
}

// New compiles the configured filters; nil when they are off.
func New(f config.Filters) (*Redactor, error) {
	if !f.Enabled {
		return nil, nil
	}
	type pat struct{ label, re string }
	var ps []pat
	if config.On(f.APIKeys) {
		ps = append(ps, pat{"api_key", apiKeyRE})
	}
	if config.On(f.CardNumbers) {
		ps = append(ps, pat{"card_number", cardRE})
	}
	if config.On(f.Emails) {
		ps = append(ps, pat{"email", emailRE})
	}
	for _, c := range f.Custom {
		ps = append(ps, pat{c.Name, c.Pattern})
	}
	if len(ps) == 0 {
		return nil, nil
	}
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = fmt.Sprintf("(?P<f%d>%s)", i, p.re)
	}
	re, err := regexp.Compile(strings.Join(parts, "|"))
	if err != nil {
		return nil, fmt.Errorf("filters: %w", err)
	}
	r := &Redactor{re: re, card: -1, hold: f.Hold}
	for i, p := range ps {
		r.groups = append(r.groups, re.SubexpIndex(fmt.Sprintf("f%d", i)))
		r.labels = append(r.labels, "[REDACTED:"+p.label+"]")
		if p.label == "card_number" && i < 3 {
			r.card = i
		}
	}
	return r, nil
}

// replace returns what a match becomes.
func (r *Redactor) replace(s string, m []int) string {
	for i, g := range r.groups {
		if m[2*g] < 0 {
			continue
		}
		if i == r.card && !luhn(s[m[0]:m[1]]) {
			return s[m[0]:m[1]] // digits, not a card
		}
		return r.labels[i]
	}
	return s[m[0]:m[1]]
}

// luhn reports whether the digits of s pass the Luhn check.
func luhn(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && sum%10 == 0
}

// Text redacts a whole text.
func (r *Redactor) Text(s string) string {
	out, _ := r.step(s, true)
	return out
}

// step redacts buf and returns what may be released now and what must be
// held for the next chunk (nothing when final).
func (r *Redactor) step(buf string, final bool) (out, rest string) {
	ms := r.re.FindAllStringSubmatchIndex(buf, -1)
	b := len(buf)
	if !final {
		b = max(len(buf)-r.hold, 0)
		for _, m := range ms {
			if m[1] > b && m[0] < b {
				b = m[0] // a match near the end may still grow: hold all of it
			}
		}
		for b > 0 && b < len(buf) && !utf8.RuneStart(buf[b]) {
			b--
		}
	}
	var sb strings.Builder
	last := 0
	for _, m := range ms {
		if m[1] > b {
			break
		}
		sb.WriteString(buf[last:m[0]])
		sb.WriteString(r.replace(buf, m))
		last = m[1]
	}
	sb.WriteString(buf[last:b])
	return sb.String(), buf[b:]
}

// Body redacts a whole (non-streamed) OpenAI response: each choice's
// message content (chat) or text (completions), or a Responses object's
// output text.
func (r *Redactor) Body(body []byte) []byte {
	return rewrite(body, func(v map[string]any) (changed bool) {
		if _, ok := v["output"].([]any); ok {
			return r.redactResponse(v)
		}
		forChoices(v, func(_ int, c map[string]any) {
			if msg, ok := c["message"].(map[string]any); ok {
				if s, ok := msg["content"].(string); ok {
					msg["content"], changed = r.Text(s), true
				}
			}
			if s, ok := c["text"].(string); ok {
				c["text"], changed = r.Text(s), true
			}
		})
		return changed
	})
}

// rewrite decodes a JSON object (numbers kept exact), lets edit change it,
// and re-encodes it if it did; anything unparsable passes unchanged.
func rewrite(data []byte, edit func(map[string]any) bool) []byte {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if d.Decode(&v) != nil || !edit(v) {
		return data
	}
	out, err := json.Marshal(v)
	if err != nil {
		return data
	}
	return out
}

func forChoices(v map[string]any, f func(idx int, c map[string]any)) {
	cs, _ := v["choices"].([]any)
	for i, c := range cs {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		idx := i
		if n, ok := m["index"].(json.Number); ok {
			if x, err := n.Int64(); err == nil {
				idx = int(x)
			}
		}
		f(idx, m)
	}
}

// Stream is one streamed response's redaction state.
type Stream struct {
	r     *Redactor
	held  map[int]string    // per choice index
	parts map[string]string // per Responses (output_index, content_index)
	shift int64             // Responses events added so far, to renumber the rest
}

// Stream starts redacting a streamed response.
func (r *Redactor) Stream() *Stream {
	return &Stream{r: r, held: map[int]string{}, parts: map[string]string{}}
}

// Events rewrites one SSE data payload of a chat, completions or Responses
// stream into the payloads the client is sent: one, except where a
// Responses text ends with a held tail, which goes out as one more delta
// before its done event.
func (s *Stream) Events(data []byte) [][]byte {
	if isResponseEvent(data) {
		return s.responseEvent(data)
	}
	return [][]byte{s.Chunk(data)}
}

// Chunk rewrites one SSE data payload: each choice's delta text is redacted
// with what was held before, the tail that may still grow is held, and a
// choice's finishing chunk releases the rest.
func (s *Stream) Chunk(data []byte) []byte {
	return rewrite(data, func(v map[string]any) (changed bool) {
		forChoices(v, func(idx int, c map[string]any) {
			if s.choice(idx, c) {
				changed = true
			}
		})
		return changed
	})
}

// choice redacts one choice of a chunk and reports whether it changed.
func (s *Stream) choice(idx int, c map[string]any) bool {
	final := c["finish_reason"] != nil
	var field map[string]any
	key := "content"
	if delta, ok := c["delta"].(map[string]any); ok {
		field = delta
	} else if _, ok := c["text"]; ok {
		field, key = c, "text"
	}
	if field == nil {
		if !final || s.held[idx] == "" {
			return false
		}
		field = map[string]any{}
		c["delta"] = field
	}
	in, _ := field[key].(string)
	if in == "" && !final && field[key] == nil {
		return false
	}
	out, rest := s.r.step(s.held[idx]+in, final)
	s.held[idx] = rest
	if out == in {
		return false
	}
	field[key] = out
	return true
}
