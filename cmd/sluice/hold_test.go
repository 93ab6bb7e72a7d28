package main

import (
	"testing"

	"github.com/sluice-ai/sluice/internal/enginetest"
	"github.com/sluice-ai/sluice/shared/admission"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/openai"
)

// holdFor is the hold admission takes for body under cfg (the same parse
// and bounds submit runs), or ok false when the body is refused.
func holdFor(t *testing.T, cfg *config.Config, endpoint, body string) (enginetest.Hold, bool) {
	t.Helper()
	req, err := openai.Parse(endpoint, []byte(body), cfg, openai.Limits{MaxMessages: cfg.Server.MaxMessages,
		BytesPerTokenFloor: cfg.Server.BytesPerTokenFloor})
	if err != nil {
		return enginetest.Hold{}, false
	}
	p, c := admission.New(cfg, nil, nil, nil).Bounds(admission.Request{Model: req.Model, PromptBytes: req.PromptBytes,
		ExtraTokens: req.ExtraTokens, Messages: req.Messages, MaxTokens: req.MaxTokens, Room: req.Room, Prompts: req.Prompts,
		Choices: req.Choices})
	return enginetest.Hold{Prompt: p, Completion: c}, true
}
