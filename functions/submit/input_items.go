package submit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/sluice-ai/sluice/shared/openai"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// listInputItems: GET /v1/responses/{id}/input_items, the owner's stored
// response's input items as OpenAI's cursor list (?after, ?limit 1..100,
// default 20, ?order asc|desc, default desc). The items are the input the
// response was generated from, the expanded previous_response_id history
// included. Each gets the id OpenAI's shape needs (its own where it had
// one, else one derived from the response id and its position, stable
// across reads), and a message's string content is given as an input_text
// (output_text for the assistant's) part, as OpenAI lists it.
func (s *service) listInputItems(w http.ResponseWriter, r *http.Request) {
	p, err := s.authorize(r, sluice.PermInferenceExecute)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	q := r.URL.Query()
	limit, err := listLimit(r, 20, 100)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	order := q.Get("order")
	if order == "" {
		order = "desc"
	}
	if order != "asc" && order != "desc" {
		openai.WriteError(w, r, s.Log, sluice.Invalid("order", sluice.CodeInvalidValue, "order must be asc or desc."))
		return
	}
	id := r.PathValue("id")
	sr, err := s.storedResponse(r.Context(), p.UserID, id, "")
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	items, err := listedItems(id, sr.Input)
	if err != nil {
		openai.WriteError(w, r, s.Log, err)
		return
	}
	if order == "desc" {
		slices.Reverse(items)
	}
	start := 0
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(items, func(it inputItem) bool { return it.id == after })
		if i < 0 {
			openai.WriteError(w, r, s.Log, sluice.Invalid("after", sluice.CodeInvalidValue, "No input item with id '%s' in this response.", after))
			return
		}
		start = i + 1
	}
	end := min(start+limit, len(items))
	openai.WriteJSON(w, http.StatusOK, listPage(items[start:end], end < len(items), func(it inputItem) string { return it.id }))
}

// inputItem is one listed item: its id and its JSON as listed.
type inputItem struct {
	id  string
	raw json.RawMessage
}

// MarshalJSON lists the item as its JSON.
func (it inputItem) MarshalJSON() ([]byte, error) { return it.raw, nil }

// listedItems gives a stored input's items ids and OpenAI's listed shape.
func listedItems(respID string, input json.RawMessage) ([]inputItem, error) {
	var raw []map[string]any
	if err := json.Unmarshal(input, &raw); err != nil {
		return nil, fmt.Errorf("stored response %s: input unreadable: %w", respID, err)
	}
	base := strings.TrimPrefix(respID, "resp_")
	out := make([]inputItem, 0, len(raw))
	for i, m := range raw {
		if _, ok := m["type"]; !ok && m["role"] != nil {
			m["type"] = "message"
		}
		if s, ok := m["content"].(string); ok && m["type"] == "message" {
			part := "input_text"
			if m["role"] == "assistant" {
				part = "output_text"
			}
			m["content"] = []any{map[string]any{"type": part, "text": s}}
		}
		id, _ := m["id"].(string)
		if id == "" {
			id = fmt.Sprintf("msg_%s_%d", base, i)
			m["id"] = id
		}
		if m["type"] == "message" && m["status"] == nil {
			m["status"] = "completed"
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, inputItem{id: id, raw: b})
	}
	return out, nil
}
