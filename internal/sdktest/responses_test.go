package sdktest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
)

// TestGoSDKResponses: openai-go's Responses calls, unchanged, against the
// stack: New (plain), NewStreaming (the Responses event types, usage in
// response.completed), New with previous_response_id (Sluice expands the
// chain), Get and Delete of a stored response.
func TestGoSDKResponses(t *testing.T) {
	t.Parallel()
	s := startStack(t, defaultYAML)
	c := s.client()
	ctx := context.Background()

	r, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: shared.ResponsesModel(s.Model),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("hello from openai-go")},
		Instructions:    openai.String("be brief"),
		MaxOutputTokens: openai.Int(16), Metadata: shared.Metadata{"suite": "sdktest"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if r.Object != "response" || r.OutputText() == "" || r.Usage.InputTokens == 0 || r.Usage.OutputTokens == 0 || r.Metadata["suite"] != "sdktest" {
		t.Fatalf("plain: %+v", r)
	}
	fmt.Printf("go sdk responses: %s %q input=%d output=%d\n", r.ID, r.OutputText(), r.Usage.InputTokens, r.Usage.OutputTokens)

	st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: shared.ResponsesModel(s.Model),
		Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String("tell me a story")},
		MaxOutputTokens: openai.Int(12)})
	events, text := 0, ""
	var done responses.Response
	for st.Next() {
		ev := st.Current()
		events++
		switch ev.Type {
		case "response.output_text.delta":
			text += ev.Delta
		case "response.completed":
			done = ev.Response
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v\n%s", err, s.Tail())
	}
	if done.ID == "" || done.Usage.OutputTokens == 0 || done.OutputText() != text || text == "" {
		t.Fatalf("stream: %d events, text %q, completed %+v", events, text, done)
	}
	fmt.Printf("go sdk responses stream: %d events, %q, usage input=%d output=%d\n", events, text, done.Usage.InputTokens, done.Usage.OutputTokens)

	next, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: shared.ResponsesModel(s.Model),
		Input:              responses.ResponseNewParamsInputUnion{OfString: openai.String("and then?")},
		PreviousResponseID: openai.String(r.ID), MaxOutputTokens: openai.Int(8)})
	if err != nil {
		t.Fatalf("previous_response_id: %v\n%s", err, s.Tail())
	}
	if next.PreviousResponseID != r.ID || next.Usage.InputTokens <= r.Usage.InputTokens+r.Usage.OutputTokens { // the history: the first turn's input and output
		t.Fatalf("chained: %+v", next)
	}
	fmt.Printf("go sdk responses chain: %s after %s, input=%d (the first turn's was %d)\n", next.ID, next.PreviousResponseID, next.Usage.InputTokens, r.Usage.InputTokens)

	// The chained response's input items: the first turn's input and
	// output, then its own, oldest first, one page of two then the rest.
	p1, err := c.Responses.InputItems.List(ctx, next.ID, responses.InputItemListParams{Limit: openai.Int(2), Order: responses.InputItemListParamsOrderAsc})
	if err != nil || len(p1.Data) != 2 || !p1.HasMore || p1.Data[0].Type != "message" || p1.Data[0].ID == "" {
		t.Fatalf("input items, first page: %+v %v", p1, err)
	}
	if !strings.Contains(p1.Data[0].RawJSON(), `"text":"hello from openai-go"`) || !strings.Contains(p1.Data[0].RawJSON(), `"input_text"`) {
		t.Fatalf("first input item: %+v", p1.Data[0])
	}
	p2, err := c.Responses.InputItems.List(ctx, next.ID, responses.InputItemListParams{After: openai.String(p1.Data[1].ID),
		Order: responses.InputItemListParamsOrderAsc})
	if err != nil || len(p2.Data) == 0 || p2.HasMore || !strings.Contains(p2.Data[len(p2.Data)-1].RawJSON(), `"text":"and then?"`) {
		t.Fatalf("input items, second page: %+v %v", p2, err)
	}
	desc, err := c.Responses.InputItems.List(ctx, next.ID, responses.InputItemListParams{})
	if err != nil || len(desc.Data) != 2+len(p2.Data) || desc.Data[0].ID != p2.Data[len(p2.Data)-1].ID {
		t.Fatalf("input items, default order (desc): %+v %v", desc, err)
	}
	var ie *openai.Error
	if _, err := c.Responses.InputItems.List(ctx, next.ID, responses.InputItemListParams{Limit: openai.Int(101)}); !errors.As(err, &ie) ||
		ie.StatusCode != http.StatusBadRequest || ie.Param != "limit" {
		t.Fatalf("input items, limit 101: %v", err)
	}
	fmt.Printf("go sdk responses input_items: %d items for %s (pages of 2 and %d)\n", len(desc.Data), next.ID, len(p2.Data))

	got, err := c.Responses.Get(ctx, r.ID, responses.ResponseGetParams{})
	if err != nil || got.ID != r.ID || got.OutputText() != r.OutputText() {
		t.Fatalf("get: %+v %v", got, err)
	}
	if err := c.Responses.Delete(ctx, r.ID); err != nil {
		t.Fatalf("delete: %v", err)
	}
	var ae *openai.Error
	if _, err := c.Responses.Get(ctx, r.ID, responses.ResponseGetParams{}); !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		t.Fatalf("get after delete: %v", err)
	}
	fmt.Printf("go sdk responses: get %s ok, deleted, then 404\n", r.ID)
}
