package postgres

import (
	"context"
	"encoding/hex"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// UpsertUser returns the user with this email, creating it with tier and role
// if it does not exist.
func (db *DB) UpsertUser(ctx context.Context, email, tier, role string) (sluice.User, error) {
	var u sluice.User
	err := db.Pool.QueryRow(ctx, q("UpsertUser"), strings.TrimSpace(email), tier, role).
		Scan(&u.ID, &u.Email, &u.Role, &u.Tier, &u.Disabled, &u.CreatedAt)
	return u, translate(err)
}

// CreateAPIKey stores a key's hash (never the key) for userID.
func (db *DB) CreateAPIKey(ctx context.Context, userID, name string, hash []byte, prefix string, expires *time.Time) (sluice.APIKey, error) {
	k := sluice.APIKey{UserID: userID, Name: name, Prefix: prefix, Hash: hash, ExpiresAt: expires}
	err := db.Pool.QueryRow(ctx, q("CreateAPIKey"), userID, hex.EncodeToString(hash), name, prefix, expires).
		Scan(&k.ID, &k.CreatedAt)
	return k, translate(err)
}

// LookupKey returns the principal owning the key with this hash. Revoked and
// expired keys are not found; a disabled user is returned with Disabled set.
func (db *DB) LookupKey(ctx context.Context, hash []byte) (sluice.Principal, error) {
	var p sluice.Principal
	err := db.Pool.QueryRow(ctx, q("LookupKey"), hex.EncodeToString(hash)).
		Scan(&p.KeyID, &p.UserID, &p.Email, &p.Role, &p.Tier, &p.Disabled)
	return p, translate(err)
}

// RevokeKey revokes the caller's key and returns its hash (for cache eviction).
func (db *DB) RevokeKey(ctx context.Context, userID, keyID string) ([]byte, error) {
	var h string
	if err := db.Pool.QueryRow(ctx, q("RevokeKey"), keyID, userID).Scan(&h); err != nil {
		return nil, translate(err)
	}
	b, err := hex.DecodeString(h)
	return b, err
}

// TouchKeys sets last_used_at for many keys in one statement.
func (db *DB) TouchKeys(ctx context.Context, keyIDs []string, at time.Time) error {
	if len(keyIDs) == 0 {
		return nil
	}
	_, err := db.Pool.Exec(ctx, q("TouchKeys"), keyIDs, at)
	return translate(err)
}

// InsertUsage writes a batch of usage events in one statement and returns how
// many were new. Events whose job is already recorded are skipped.
func (db *DB) InsertUsage(ctx context.Context, evs []sluice.UsageEvent) (int64, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	n := len(evs)
	var (
		jobs, users, keys, models, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		prompt, completion, cached, latency = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		created, ended                      = make([]time.Time, n), make([]time.Time, n)
		requested                           = make([]string, n)
		engine                              = make([]int64, n)
		tiers                               = make([]string, n)
	)
	for i, e := range evs {
		jobs[i], users[i], keys[i], models[i], statuses[i] = e.JobID, e.UserID, e.KeyID, e.Model, string(e.Status)
		prompt[i], completion[i], cached[i], latency[i] = e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.CachedTokens, e.LatencyMS
		created[i], ended[i], requested[i], engine[i] = e.CreatedAt, e.EndedAt, e.Requested, max(e.EngineMS, 0)
		tiers[i] = e.ServiceTier
	}
	tag, err := db.Pool.Exec(ctx, q("InsertUsage"), jobs, users, keys, models, prompt, completion, cached, latency, statuses, created, ended, requested, engine, tiers)
	if err != nil {
		return 0, translate(err)
	}
	return tag.RowsAffected(), nil
}

// UsageForUser lists a user's usage rows, oldest first.
func (db *DB) UsageForUser(ctx context.Context, userID string) ([]UsageRow, error) {
	rows, err := db.Pool.Query(ctx, q("UsageForUser"), userID)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (UsageRow, error) {
		var r UsageRow
		err := row.Scan(&r.JobID, &r.Model, &r.PromptTokens, &r.CompletionTokens, &r.Status, &r.LatencyMS, &r.CachedTokens)
		return r, err
	})
	return out, translate(err)
}
