package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluice-ai/sluice/shared/apikey"
	"github.com/sluice-ai/sluice/shared/postgres/pgtest"
	"github.com/sluice-ai/sluice/shared/sluice"
)

func TestKeysAndUsage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if err := db.Migrate(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	u, err := db.UpsertUser(ctx, "A@Example.com", "free", "user")
	if err != nil {
		t.Fatal(err)
	}
	again, err := db.UpsertUser(ctx, "a@example.com", "pro", "admin")
	if err != nil || again.ID != u.ID || again.Role != "user" {
		t.Fatalf("upsert must keep the existing user: %+v %v", again, err)
	}
	key, _ := apikey.New()
	pepper := []byte("0123456789abcdef0123456789abcdef")
	k, err := db.CreateAPIKey(ctx, u.ID, "test", apikey.Hash(pepper, key), apikey.Display(key), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.LookupKey(ctx, apikey.Hash(pepper, key))
	if err != nil || p.UserID != u.ID || p.KeyID != k.ID || p.Tier != "free" {
		t.Fatalf("lookup: %+v %v", p, err)
	}
	if err := db.TouchKeys(ctx, []string{k.ID}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ev := sluice.UsageEvent{JobID: "job_1", UserID: u.ID, KeyID: k.ID, Model: "m", Status: sluice.JobSucceeded,
		Usage: sluice.Usage{PromptTokens: 3, CompletionTokens: 4}, CreatedAt: time.Now(), EndedAt: time.Now()}
	n, err := db.InsertUsage(ctx, []sluice.UsageEvent{ev, ev})
	if err != nil || n != 1 {
		t.Fatalf("insert usage = %d, %v; want 1 row for a duplicated job", n, err)
	}
	if n, _ := db.InsertUsage(ctx, []sluice.UsageEvent{ev}); n != 0 {
		t.Fatalf("redelivered usage inserted %d rows", n)
	}
	// The alias a job was asked for is kept beside the version that served it.
	ab := ev
	ab.JobID, ab.Requested = "job_2", "llama-2"
	if n, err := db.InsertUsage(ctx, []sluice.UsageEvent{ab}); err != nil || n != 1 {
		t.Fatalf("insert aliased usage = %d, %v", n, err)
	}
	var req1, req2 *string
	db.Pool.QueryRow(ctx, `SELECT (SELECT requested_model FROM inference_requests WHERE job_id = 'job_1'),
		(SELECT requested_model FROM inference_requests WHERE job_id = 'job_2')`).Scan(&req1, &req2) //nolint:errcheck
	if req1 != nil || req2 == nil || *req2 != "llama-2" {
		t.Fatalf("requested_model: %v %v", req1, req2)
	}
	if _, err := db.RevokeKey(ctx, u.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.LookupKey(ctx, apikey.Hash(pepper, key)); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("revoked key: %v", err)
	}
}
