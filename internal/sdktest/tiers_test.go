package sdktest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestGoSDKTier: openai-go's ServiceTier param on chat (plain and
// streamed) and completions; the response echoes the tier that served,
// and a tier Sluice does not serve ("scale") is the SDK's 400 error on
// param service_tier.
func TestGoSDKTier(t *testing.T) {
	t.Parallel()
	s := startStack(t, defaultYAML)
	c := s.client()
	ctx := context.Background()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}

	cc, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.Model, MaxTokens: openai.Int(8), Messages: msgs,
		ServiceTier: openai.ChatCompletionNewParamsServiceTierFlex})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if cc.ServiceTier != openai.ChatCompletionServiceTierFlex || len(cc.Choices) != 1 {
		t.Fatalf("flex chat: service_tier %q, %d choices", cc.ServiceTier, len(cc.Choices))
	}
	fmt.Printf("go sdk tier: flex chat served at %q, completion=%d\n", cc.ServiceTier, cc.Usage.CompletionTokens)

	st := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: s.Model, MaxTokens: openai.Int(8), Messages: msgs,
		ServiceTier: openai.ChatCompletionNewParamsServiceTierPriority})
	chunks := 0
	for st.Next() {
		ch := st.Current()
		if ch.ServiceTier != openai.ChatCompletionChunkServiceTierPriority {
			t.Fatalf("priority chunk %d: service_tier %q", chunks, ch.ServiceTier)
		}
		chunks++
	}
	if err := st.Err(); err != nil || chunks < 2 {
		t.Fatalf("priority stream: %d chunks, %v", chunks, err)
	}
	fmt.Printf("go sdk tier: priority stream, %d chunks each at \"priority\"\n", chunks)

	cp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(s.Model), MaxTokens: openai.Int(8),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hello")}},
		option.WithJSONSet("service_tier", "auto")) // the legacy completions params have no ServiceTier field
	if err != nil {
		t.Fatalf("auto completion: %v", err)
	}
	if got := cp.JSON.ExtraFields["service_tier"].Raw(); got != `"default"` {
		t.Fatalf("auto completion: service_tier %s, want \"default\"", got)
	}
	fmt.Printf("go sdk tier: auto completion served at %s\n", cp.JSON.ExtraFields["service_tier"].Raw())

	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.Model, MaxTokens: openai.Int(8), Messages: msgs,
		ServiceTier: openai.ChatCompletionNewParamsServiceTierScale})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "service_tier" {
		t.Fatalf("service_tier scale: %v, want a 400 on param service_tier", err)
	}
	fmt.Printf("go sdk tier: scale refused: %d %s\n", apiErr.StatusCode, apiErr.Message)
}
