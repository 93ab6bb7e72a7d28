package sdktest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
)

// TestGoSDKBatch: openai-go uploads a batch file (Files.New), creates a
// batch (Batches.New), polls it (Batches.Get) until completed, and
// downloads the output (Files.Content): each custom_id once, each a chat
// completion.
func TestGoSDKBatch(t *testing.T) {
	t.Parallel()
	s := startStack(t, defaultYAML)
	c := s.client()
	ctx := context.Background()
	const n = 20
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, `{"custom_id":"go-%d","method":"POST","url":"/v1/chat/completions","body":{"model":%q,"messages":[{"role":"user","content":"line %d"}],"max_tokens":8}}`+"\n", i, s.Model, i)
	}
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(in.Bytes()), "batch.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	if !strings.HasPrefix(f.ID, "file-") || f.Bytes != int64(in.Len()) || f.Purpose != openai.FileObjectPurposeBatch {
		t.Fatalf("file: %+v", f)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h, Metadata: shared.Metadata{"job": "sdk"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, s.Tail())
	}
	start := time.Now()
	for b.Status != openai.BatchStatusCompleted {
		if b.Status == openai.BatchStatusFailed || time.Since(start) > time.Minute {
			t.Fatalf("batch: %+v\n%s", b, s.Tail())
		}
		time.Sleep(100 * time.Millisecond)
		if b, err = c.Batches.Get(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
	}
	if b.RequestCounts.Total != n || b.RequestCounts.Completed != n || b.OutputFileID == "" || b.Metadata["job"] != "sdk" {
		t.Fatalf("completed batch: %+v", b)
	}
	resp, err := c.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var l struct {
			CustomID string `json:"custom_id"`
			Response struct {
				StatusCode int                   `json:"status_code"`
				Body       openai.ChatCompletion `json:"body"`
			} `json:"response"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Response.StatusCode != 200 || len(l.Response.Body.Choices) != 1 {
			t.Fatalf("output line %s: %v", sc.Bytes(), err)
		}
		seen[l.CustomID] = true
	}
	if len(seen) != n {
		t.Fatalf("output has %d custom ids, want %d", len(seen), n)
	}
	list, err := c.Batches.List(ctx, openai.BatchListParams{Limit: openai.Int(5)})
	if err != nil || len(list.Data) != 1 || list.Data[0].ID != b.ID {
		t.Fatalf("list: %v %+v", err, list)
	}
	fmt.Printf("go sdk batch: %d lines completed in %s, output %d bytes\n", n, time.Since(start).Round(time.Millisecond), len(raw))
}
