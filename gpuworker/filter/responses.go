package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The Responses API carries output text in other shapes than chat: a
// response object's output items (message items with output_text parts),
// and, streamed, typed events: output_text deltas per (output_index,
// content_index), then done events repeating the whole text, and response
// objects on created/in_progress/completed. A filter that knew only chat
// would let every secret through /v1/responses.

// redactResponse redacts a response object's output text in place and
// reports whether anything changed.
func (r *Redactor) redactResponse(resp map[string]any) (changed bool) {
	items, _ := resp["output"].([]any)
	for _, it := range items {
		if item, ok := it.(map[string]any); ok && r.redactItem(item) {
			changed = true
		}
	}
	return changed
}

// redactItem redacts one output item's text parts.
func (r *Redactor) redactItem(item map[string]any) (changed bool) {
	parts, _ := item["content"].([]any)
	for _, p := range parts {
		if part, ok := p.(map[string]any); ok && r.redactPart(part) {
			changed = true
		}
	}
	return changed
}

// redactPart redacts one content part's text.
func (r *Redactor) redactPart(part map[string]any) bool {
	s, ok := part["text"].(string)
	if !ok {
		return false
	}
	part["text"] = r.Text(s)
	return true
}

// isResponseEvent tells a Responses stream event from a chat or
// completions chunk without parsing it.
func isResponseEvent(data []byte) bool { return bytes.Contains(data, []byte(`"type":"response.`)) }

// responseEvent rewrites one Responses stream event into the events the
// client is sent: deltas hold back a tail that may still grow into a
// match, and a text's done event first releases that tail as one more
// delta. Sequence numbers are shifted so they stay consecutive.
func (s *Stream) responseEvent(data []byte) [][]byte {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return [][]byte{data}
	}
	seq, hasSeq := int64(0), false
	if n, ok := v["sequence_number"].(json.Number); ok {
		if x, err := n.Int64(); err == nil {
			seq, hasSeq = x+s.shift, true
			v["sequence_number"] = seq
		}
	}
	key := fmt.Sprint(v["output_index"], "/", v["content_index"])
	var out [][]byte
	switch typ, _ := v["type"].(string); typ {
	case "response.output_text.delta":
		in, _ := v["delta"].(string)
		o, rest := s.r.step(s.parts[key]+in, false)
		s.parts[key] = rest
		v["delta"] = o
	case "response.output_text.done":
		if rest := s.parts[key]; rest != "" {
			o, _ := s.r.step(rest, true)
			tail := map[string]any{"type": "response.output_text.delta", "item_id": v["item_id"],
				"output_index": v["output_index"], "content_index": v["content_index"], "delta": o}
			if hasSeq {
				tail["sequence_number"] = seq
				s.shift++
				v["sequence_number"] = seq + 1
			}
			out = append(out, marshal(tail, nil))
		}
		delete(s.parts, key)
		if t, ok := v["text"].(string); ok {
			v["text"] = s.r.Text(t)
		}
	case "response.content_part.added", "response.content_part.done":
		if part, ok := v["part"].(map[string]any); ok {
			s.r.redactPart(part)
		}
	case "response.output_item.added", "response.output_item.done":
		if item, ok := v["item"].(map[string]any); ok {
			s.r.redactItem(item)
		}
	default:
		if resp, ok := v["response"].(map[string]any); ok {
			s.r.redactResponse(resp)
		}
	}
	return append(out, marshal(v, data))
}

// marshal encodes v, or returns fallback if it cannot.
func marshal(v map[string]any, fallback []byte) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return fallback
	}
	return b
}
