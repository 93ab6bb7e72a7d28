package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-ai/sluice/shared/batch"
)

var _ batch.Store = (*DB)(nil)

func interval(d time.Duration) string { return fmt.Sprintf("%d milliseconds", d.Milliseconds()) }

// CreateFile records a stored file (batch.Store).
func (db *DB) CreateFile(ctx context.Context, f *batch.File) error {
	return translate(db.Pool.QueryRow(ctx, q("CreateFile"), f.ID, f.UserID, f.Purpose, f.Filename, f.Bytes, f.StorageKey, f.Status).Scan(&f.CreatedAt))
}

// GetUpload returns a user's presigned upload not yet completed (batch.Store).
func (db *DB) GetUpload(ctx context.Context, id, userID string) (batch.File, error) {
	return scanFile(db.Pool.QueryRow(ctx, q("GetUpload"), id, userID))
}

// CompleteUpload makes a presigned upload a file of size bytes (batch.Store).
func (db *DB) CompleteUpload(ctx context.Context, id, userID string, bytes int64) (batch.File, error) {
	return scanFile(db.Pool.QueryRow(ctx, q("CompleteUpload"), id, userID, bytes))
}

func scanFile(row pgx.Row) (batch.File, error) {
	var f batch.File
	err := row.Scan(&f.ID, &f.UserID, &f.Purpose, &f.Filename, &f.Bytes, &f.StorageKey, &f.CreatedAt)
	return f, translate(err)
}

// GetFile returns a live file of owner's (batch.Store).
func (db *DB) GetFile(ctx context.Context, id, owner string) (batch.File, error) {
	return scanFile(db.Pool.QueryRow(ctx, q("GetFile"), id, owner))
}

// ListFiles lists a user's live files, newest first (batch.Store).
func (db *DB) ListFiles(ctx context.Context, userID, purpose, after string, limit int) ([]batch.File, error) {
	rows, err := db.Pool.Query(ctx, q("ListFiles"), userID, purpose, after, limit)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (batch.File, error) { return scanFile(row) })
	return out, translate(err)
}

// DeleteFile marks a user's file deleted (batch.Store).
func (db *DB) DeleteFile(ctx context.Context, id, userID string) (batch.File, error) {
	return scanFile(db.Pool.QueryRow(ctx, q("DeleteFile"), id, userID))
}

// CreateBatch records a new batch (batch.Store).
func (db *DB) CreateBatch(ctx context.Context, b *batch.Batch) error {
	owner, _ := json.Marshal(b.Owner)
	var errs []byte
	if len(b.Errors) > 0 {
		errs, _ = json.Marshal(b.Errors)
	}
	return translate(db.Pool.QueryRow(ctx, q("CreateBatch"), b.ID, b.UserID, owner, b.Endpoint, b.InputFileID,
		b.CompletionWindow, batch.MarshalMetadata(b.Metadata), b.Status, errs, interval(batch.Window)).Scan(&b.CreatedAt, &b.ExpiresAt))
}

func scanBatch(row pgx.Row) (batch.Batch, error) {
	var b batch.Batch
	var owner, meta, errs []byte
	var out, errf *string
	err := row.Scan(&b.ID, &b.UserID, &owner, &b.Endpoint, &b.InputFileID, &b.CompletionWindow, &meta, &b.Status, &errs,
		&b.Total, &b.NextLine, &out, &errf, &b.CreatedAt, &b.ExpiresAt, &b.InProgressAt, &b.FinalizingAt, &b.CompletedAt,
		&b.FailedAt, &b.ExpiredAt, &b.CancellingAt, &b.CancelledAt, &b.Completed, &b.Failed)
	if err != nil {
		return b, translate(err)
	}
	json.Unmarshal(owner, &b.Owner) //nolint:errcheck // written by CreateBatch
	if len(meta) > 0 {
		json.Unmarshal(meta, &b.Metadata) //nolint:errcheck
	}
	if len(errs) > 0 {
		json.Unmarshal(errs, &b.Errors) //nolint:errcheck
	}
	if out != nil {
		b.OutputFileID = *out
	}
	if errf != nil {
		b.ErrorFileID = *errf
	}
	return b, nil
}

// GetBatch returns a batch with its live counts (batch.Store).
func (db *DB) GetBatch(ctx context.Context, id, owner string) (batch.Batch, error) {
	return scanBatch(db.Pool.QueryRow(ctx, q("GetBatch"), id, owner))
}

// ListBatches lists a user's batches, newest first (batch.Store).
func (db *DB) ListBatches(ctx context.Context, userID, after string, limit int) ([]batch.Batch, error) {
	rows, err := db.Pool.Query(ctx, q("ListBatches"), userID, after, limit)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (batch.Batch, error) { return scanBatch(row) })
	return out, translate(err)
}

// CancelBatch starts cancelling a batch that has not ended (batch.Store).
func (db *DB) CancelBatch(ctx context.Context, id, userID string) (bool, error) {
	return affected(db.Pool.QueryRow(ctx, q("CancelBatch"), id, userID))
}

// affected reports whether a RETURNING statement changed a row.
func affected(row pgx.Row) (bool, error) {
	var id string
	err := row.Scan(&id)
	if err == pgx.ErrNoRows {
		return false, nil
	}
	return err == nil, translate(err)
}

// ClaimBatch leases an unfinished, unheld batch to owner (batch.Store).
func (db *DB) ClaimBatch(ctx context.Context, owner string, lease time.Duration) (string, bool, error) {
	var id string
	err := db.Pool.QueryRow(ctx, q("ClaimBatch"), owner, interval(lease)).Scan(&id)
	if err == pgx.ErrNoRows {
		return "", false, nil
	}
	return id, err == nil, translate(err)
}

// RenewBatch extends owner's lease (batch.Store).
func (db *DB) RenewBatch(ctx context.Context, id, owner string, lease time.Duration) (string, error) {
	var st string
	err := db.Pool.QueryRow(ctx, q("RenewBatch"), id, owner, interval(lease)).Scan(&st)
	if err == pgx.ErrNoRows {
		return "", batch.ErrLost
	}
	return st, translate(err)
}

// ReleaseBatch gives up owner's lease (batch.Store).
func (db *DB) ReleaseBatch(ctx context.Context, id, owner string) error {
	_, err := db.Pool.Exec(ctx, q("ReleaseBatch"), id, owner)
	return translate(err)
}

func held(ok bool, err error) error {
	if err == nil && !ok {
		return batch.ErrLost
	}
	return err
}

// StartBatch ends a batch's validation (batch.Store).
func (db *DB) StartBatch(ctx context.Context, id, owner, status string, total int, errs []batch.LineError) error {
	var eb []byte
	if len(errs) > 0 {
		eb, _ = json.Marshal(errs)
	}
	return held(affected(db.Pool.QueryRow(ctx, q("StartBatch"), id, owner, status, total, eb)))
}

// AdvanceBatch moves a batch's admitted-line cursor (batch.Store).
func (db *DB) AdvanceBatch(ctx context.Context, id, owner string, next int) error {
	return held(affected(db.Pool.QueryRow(ctx, q("AdvanceBatch"), id, owner, next)))
}

// SetBatchStatus moves a batch to finalizing or cancelling (batch.Store).
func (db *DB) SetBatchStatus(ctx context.Context, id, owner, status string) error {
	return held(affected(db.Pool.QueryRow(ctx, q("SetBatchStatus"), id, owner, status)))
}

// AddBatchResults records line outcomes, each once (batch.Store).
func (db *DB) AddBatchResults(ctx context.Context, id string, rs []batch.Result) error {
	if len(rs) == 0 {
		return nil
	}
	lines, oks, bodies := make([]int32, len(rs)), make([]bool, len(rs)), make([]string, len(rs))
	for i, r := range rs {
		lines[i], oks[i], bodies[i] = int32(r.Line), r.OK, r.Body
	}
	_, err := db.Pool.Exec(ctx, q("AddBatchResults"), id, lines, oks, bodies)
	return translate(err)
}

// BatchResultLines lists a batch's lines with an outcome (batch.Store).
func (db *DB) BatchResultLines(ctx context.Context, id string) ([]int, error) {
	rows, err := db.Pool.Query(ctx, q("BatchResultLines"), id)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	return out, translate(err)
}

// BatchResults returns a batch's outcomes of one kind in line order (batch.Store).
func (db *DB) BatchResults(ctx context.Context, id string, ok bool) ([]string, error) {
	rows, err := db.Pool.Query(ctx, q("BatchResults"), id, ok)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, translate(err)
}

// FinishBatch records a batch's files and final status in one transaction (batch.Store).
func (db *DB) FinishBatch(ctx context.Context, id, owner, status string, out, errf *batch.File) error {
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		return translate(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	var outID, errID string
	for _, f := range []*batch.File{out, errf} {
		if f == nil {
			continue
		}
		if _, err := tx.Exec(ctx, q("CreateFile"), f.ID, f.UserID, f.Purpose, f.Filename, f.Bytes, f.StorageKey, ""); err != nil {
			return translate(err)
		}
	}
	if out != nil {
		outID = out.ID
	}
	if errf != nil {
		errID = errf.ID
	}
	ok, err := affected(tx.QueryRow(ctx, q("FinishBatch"), id, owner, status, outID, errID))
	if err = held(ok, err); err != nil {
		return err
	}
	return translate(tx.Commit(ctx))
}
