package postgres

import (
	"context"

	"github.com/sluice-ai/sluice/shared/sluice"
)

// PutResponse keeps a stored response; the same id again (a job run twice)
// overwrites it, so a response is never stored twice.
func (db *DB) PutResponse(ctx context.Context, r sluice.StoredResponse) error {
	_, err := db.Pool.Exec(ctx, q("PutResponse"), r.ID, r.UserID, r.Model, []byte(r.Input), []byte(r.Response), r.ExpiresAt)
	return translate(err)
}

// GetResponse returns the user's stored response id; another user's, an
// expired or an unknown one is sluice.ErrNotFound.
func (db *DB) GetResponse(ctx context.Context, userID, id string) (*sluice.StoredResponse, error) {
	if !sluice.IsUUID(userID) {
		return nil, sluice.ErrNotFound
	}
	var r sluice.StoredResponse
	var in, resp []byte
	err := db.Pool.QueryRow(ctx, q("GetResponse"), id, userID).Scan(&r.ID, &r.UserID, &r.Model, &in, &resp, &r.CreatedAt, &r.ExpiresAt)
	if err != nil {
		return nil, translate(err)
	}
	r.Input, r.Response = in, resp
	return &r, nil
}

// DeleteResponse deletes the user's stored response id; another user's, an
// expired or an unknown one is sluice.ErrNotFound.
func (db *DB) DeleteResponse(ctx context.Context, userID, id string) error {
	if !sluice.IsUUID(userID) {
		return sluice.ErrNotFound
	}
	tag, err := db.Pool.Exec(ctx, q("DeleteResponse"), id, userID)
	if err != nil {
		return translate(err)
	}
	if tag.RowsAffected() == 0 {
		return sluice.ErrNotFound
	}
	return nil
}

// SweepResponses deletes expired stored responses, batch by batch, and
// returns how many it deleted.
func (db *DB) SweepResponses(ctx context.Context) (int64, error) {
	const batch = 5000
	var total int64
	for {
		tag, err := db.Pool.Exec(ctx, q("SweepResponses"), batch)
		if err != nil {
			return total, translate(err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < batch {
			return total, nil
		}
	}
}
