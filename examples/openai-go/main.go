// Command openai-go calls a running Sluice with the official OpenAI Go SDK:
// models list, a chat completion, a streamed chat completion with usage, and
// a completion, printing each job id with the usage the SDK reported, so the
// inference_requests rows can be checked against them.
//
//	SLUICE_URL=http://127.0.0.1:8080/v1 SLUICE_KEY=$(cat .sluice/admin.key) go run ./examples/openai-go
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	base, key := os.Getenv("SLUICE_URL"), os.Getenv("SLUICE_KEY")
	if base == "" {
		base = "http://127.0.0.1:8080/v1"
	}
	if key == "" {
		b, err := os.ReadFile(".sluice/admin.key")
		if err != nil {
			fmt.Fprintln(os.Stderr, "set SLUICE_KEY or run from the folder where `make run` wrote .sluice/admin.key")
			os.Exit(2)
		}
		key = string(b[:len(b)-1])
	}
	if err := run(context.Background(), openai.NewClient(option.WithBaseURL(base), option.WithAPIKey(key))); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c openai.Client) error {
	page, err := c.Models.List(ctx)
	if err != nil {
		return err
	}
	for _, m := range page.Data {
		fmt.Printf("model %s\n", m.ID)
	}
	model := page.Data[0].ID
	var resp *http.Response

	cc, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(16),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello, who are you?")}},
		option.WithResponseInto(&resp))
	if err != nil {
		return err
	}
	fmt.Printf("chat        job=%s prompt=%d completion=%d text=%q\n", resp.Header.Get("Sluice-Job-Id"),
		cc.Usage.PromptTokens, cc.Usage.CompletionTokens, cc.Choices[0].Message.Content)

	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: model, MaxTokens: openai.Int(16),
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Tell me a story")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}},
		option.WithResponseInto(&resp))
	acc, chunks := openai.ChatCompletionAccumulator{}, 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		return err
	}
	fmt.Printf("chat-stream job=%s prompt=%d completion=%d chunks=%d text=%q\n", resp.Header.Get("Sluice-Job-Id"),
		acc.Usage.PromptTokens, acc.Usage.CompletionTokens, chunks, acc.Choices[0].Message.Content)

	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(model),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(8)},
		option.WithResponseInto(&resp))
	if err != nil {
		return err
	}
	fmt.Printf("completion  job=%s prompt=%d completion=%d text=%q\n", resp.Header.Get("Sluice-Job-Id"),
		comp.Usage.PromptTokens, comp.Usage.CompletionTokens, comp.Choices[0].Text)
	return nil
}
