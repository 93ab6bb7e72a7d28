package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/gpuworker/engine"
	"github.com/sluice-ai/sluice/internal/devstack"
	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/sluice"
)

// TestEmbeddings: the client sends an embeddings job to the engine's
// /v1/embeddings and reads its usage ({prompt_tokens, total_tokens}, no
// completion); /tokenize prices a cut job's inputs the way the engine
// counted them (strings tokenized one by one, token ids as sent).
func TestEmbeddings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, err := devstack.StartSim(ctx, testenv.Sim(t), "emb-7b", 512, 4, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := engine.New(sim.URL, 4)
	body := []byte(`{"model":"emb-7b","input":["the quick brown fox","jumps over the lazy dog",[1,2,3]],"dimensions":8}`)
	strs := []byte(`{"model":"emb-7b","input":["the quick brown fox","jumps over the lazy dog"],"dimensions":8}`)
	res, err := c.Do(ctx, sluice.EndpointEmbeddings, strs, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
	}
	if err := json.Unmarshal(res.Body, &out); err != nil || len(out.Data) != 2 || len(out.Data[0].Embedding) != 8 || out.Model != "emb-7b" {
		t.Fatalf("embeddings answer %s: %v", res.Body, err)
	}
	if res.Usage.PromptTokens <= 0 || res.Usage.CompletionTokens != 0 || res.Usage.TotalTokens != res.Usage.PromptTokens {
		t.Fatalf("usage %+v", res.Usage)
	}
	n, err := c.PromptTokens(ctx, "emb-7b", sluice.EndpointEmbeddings, strs, 5*time.Second)
	if err != nil || n != res.Usage.PromptTokens {
		t.Fatalf("tokenized inputs: %d %v, the engine counted %d", n, err, res.Usage.PromptTokens)
	}
	mixed, err := c.PromptTokens(ctx, "emb-7b", sluice.EndpointEmbeddings, body, 5*time.Second)
	if err != nil || mixed != n+3 {
		t.Fatalf("inputs with token ids: %d %v, want %d", mixed, err, n+3)
	}
	t.Logf("embeddings usage %+v, tokenize %d", res.Usage, n)
}
