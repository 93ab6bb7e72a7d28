package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluice-ai/sluice/internal/testenv"
	"github.com/sluice-ai/sluice/shared/app"
	"github.com/sluice-ai/sluice/shared/config"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/telemetry"
)

// TestRoles: each role opens what it uses. A worker needs no key pepper and
// gets no verifier; a function refuses to start without the pepper, and
// gets the verifier it checks every request with.
func TestRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Env.DatabaseURL, cfg.Env.RedisURL = pgtest.NewURL(t), testenv.RedisURL()

	w, err := app.OpenRole(ctx, cfg, log, app.Worker, telemetry.Options{})
	if err != nil {
		t.Fatalf("worker without a pepper: %v", err)
	}
	if w.Verifier != nil || w.Queue == nil || w.Admission == nil {
		t.Fatalf("worker deps: verifier %v, queue %v, admission %v", w.Verifier != nil, w.Queue != nil, w.Admission != nil)
	}
	sctx, stop := context.WithCancel(ctx)
	w.Start(sctx) // the settler runs; nothing reaches for a verifier
	stop()
	w.Close()

	if _, err := app.OpenRole(ctx, cfg, log, app.Function, telemetry.Options{}); err == nil || !strings.Contains(err.Error(), "SLUICE_KEY_PEPPER") {
		t.Fatalf("function without a pepper: %v", err)
	}
	cfg.Env.KeyPepper = strings.Repeat("k", 32)
	f, err := app.OpenRole(ctx, cfg, log, app.Function, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Verifier == nil {
		t.Fatal("a function has no verifier")
	}
}
