package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Served is one model an engine lists on GET /v1/models. vLLM lists its
// base model with a null parent and each loaded LoRA adapter with its base
// model as parent.
type Served struct {
	ID     string `json:"id"`
	Parent string `json:"parent"`
}

// Adapters returns the LoRA adapters the engine serves now: what GET
// /v1/models lists with a parent.
func (c *Client) Adapters(ctx context.Context, timeout time.Duration) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/models", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("engine: GET /v1/models: %d", resp.StatusCode)
	}
	var list struct {
		Data []Served `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("engine: GET /v1/models: %w", err)
	}
	out := map[string]bool{}
	for _, m := range list.Data {
		if m.Parent != "" {
			out[m.ID] = true
		}
	}
	return out, nil
}

// LoadAdapter asks the engine to load a LoRA adapter (vLLM's POST
// /v1/load_lora_adapter, which vLLM serves only when started with
// VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). An engine that refuses answers
// an error with its status and body.
func (c *Client) LoadAdapter(ctx context.Context, name, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"lora_name": name, "lora_path": path})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/load_lora_adapter", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("engine: load_lora_adapter %s: %d %s", name, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}
