package sdktest

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// embedYAML: two embedding models on the simulator, and a third whose only
// endpoint is a port nobody listens on, falling back to the second. Prices
// per input token differ, so a charge names the model that served.
const embedYAML = `
inference:
  models:
    - {name: {{model}}, task: embed, max_batch_size: 8, max_model_len: 1024}
    - {name: {{model2}}, task: embed, max_batch_size: 8, max_model_len: 1024}
    - {name: {{model3}}, task: embed, max_batch_size: 8, max_model_len: 1024, endpoints: ["http://127.0.0.1:1"], fallbacks: [{{model2}}]}
pricing:
  {{model}}: {input_tokens: 0.00002, output_tokens: 0.00003}
  {{model2}}: {input_tokens: 0.00005, output_tokens: 0.00003}
  {{model3}}: {input_tokens: 0.00001, output_tokens: 0.00003}
server: {request_timeout: 30s}
`

// TestGoSDKEmbeddings: openai-go's Embeddings.New with a string, a batch of
// strings, token ids and base64, and a call to a model with no healthy
// endpoint that its fallback serves (the response names it; the
// Sluice-Fallback header says so).
func TestGoSDKEmbeddings(t *testing.T) {
	t.Parallel()
	s := startStack(t, embedYAML)
	c := s.client()
	ctx := context.Background()
	model2, model3 := s.Model+"-b", s.Model+"-c"

	one, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: s.Model,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("the quick brown fox")}})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if len(one.Data) != 1 || len(one.Data[0].Embedding) == 0 || one.Model != s.Model || one.Usage.PromptTokens <= 0 ||
		one.Usage.TotalTokens != one.Usage.PromptTokens {
		t.Fatalf("one string: %+v", one)
	}
	fmt.Printf("go sdk embeddings (string): %d dims, prompt_tokens=%d\n", len(one.Data[0].Embedding), one.Usage.PromptTokens)

	many, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: s.Model, Dimensions: openai.Int(32), User: openai.String("u-1"),
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first input", "a second, longer input", "third"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(many.Data) != 3 || many.Usage.PromptTokens <= 0 {
		t.Fatalf("strings: %+v", many)
	}
	for i, d := range many.Data {
		if d.Index != int64(i) || len(d.Embedding) != 32 {
			t.Fatalf("strings: data[%d] index %d, %d dims", i, d.Index, len(d.Embedding))
		}
	}
	fmt.Printf("go sdk embeddings (3 strings, dimensions 32): prompt_tokens=%d\n", many.Usage.PromptTokens)

	ids, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: s.Model,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{1, 2, 3}, {4, 5, 6, 7}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.Data) != 2 || ids.Usage.PromptTokens != 7 {
		t.Fatalf("token ids: %d inputs, prompt_tokens %d (want 7, as sent)", len(ids.Data), ids.Usage.PromptTokens)
	}
	fmt.Printf("go sdk embeddings (token ids 3+4): prompt_tokens=%d\n", ids.Usage.PromptTokens)

	b64, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: s.Model, Dimensions: openai.Int(8),
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
		Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello", "world"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b64.Data) != 2 {
		t.Fatalf("base64: %+v", b64)
	}
	// openai-go leaves base64 to the caller: the raw field is the string of
	// little-endian float32s.
	var enc string
	if err := json.Unmarshal([]byte(b64.Data[0].JSON.Embedding.Raw()), &enc); err != nil {
		t.Fatalf("base64 embedding %s: %v", b64.Data[0].JSON.Embedding.Raw(), err)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != 8*4 {
		t.Fatalf("base64 embedding %q: %d bytes, %v", enc, len(raw), err)
	}
	first := math.Float32frombits(binary.LittleEndian.Uint32(raw))
	fmt.Printf("go sdk embeddings (base64, dimensions 8): %d bytes, first %.4f, prompt_tokens=%d\n", len(raw), first, b64.Usage.PromptTokens)

	// The fallback: model2 serves a request for model3, whose endpoint is
	// dead, once a worker has published model2 healthy (every second).
	if _, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: model2,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("warm up")}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	var resp *http.Response
	fb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: model3,
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("served by the fallback")}}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if h := resp.Header.Get("Sluice-Fallback"); fb.Model != model2 || h != model3+"->"+model2 {
		t.Fatalf("fallback: model %q, header %q", fb.Model, h)
	}
	fmt.Printf("go sdk embeddings (fallback): asked %s, served by %s, Sluice-Fallback: %s, prompt_tokens=%d\n",
		model3, fb.Model, resp.Header.Get("Sluice-Fallback"), fb.Usage.PromptTokens)

	// A chat call to an embedding model is a 400 on model.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: s.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Param != "model" {
		t.Fatalf("chat to an embedding model: %v", err)
	}
	fmt.Printf("go sdk chat to an embedding model: %d %s\n", ae.StatusCode, ae.Message)
}
