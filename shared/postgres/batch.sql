-- Queries of files and batches (migration 016).

-- name: CreateFile
INSERT INTO files (id, user_id, purpose, filename, bytes, storage_key, status)
VALUES ($1, $2, $3, $4, $5, $6, COALESCE(NULLIF($7, ''), 'processed'))
ON CONFLICT (id) DO NOTHING
RETURNING created_at;

-- name: GetUpload
-- A presigned upload of its owner's not completed yet.
SELECT id, user_id, purpose, filename, bytes, storage_key, created_at
FROM files WHERE id = $1 AND user_id::text = $2 AND status = 'uploading' AND deleted_at IS NULL;

-- name: CompleteUpload
UPDATE files SET status = 'processed', bytes = $3, created_at = NOW()
WHERE id = $1 AND user_id::text = $2 AND status = 'uploading' AND deleted_at IS NULL
RETURNING id, user_id, purpose, filename, bytes, storage_key, created_at;

-- name: GetFile
-- A live file of its owner's ($2 '' : any owner's).
SELECT id, user_id, purpose, filename, bytes, storage_key, created_at
FROM files WHERE id = $1 AND ($2 = '' OR user_id::text = $2) AND deleted_at IS NULL AND status = 'processed';

-- name: ListFiles
-- A user's live files, newest first, after the cursor file $3 ('' : from the
-- newest), of purpose $2 ('' : any).
SELECT id, user_id, purpose, filename, bytes, storage_key, created_at
FROM files
WHERE user_id = $1 AND deleted_at IS NULL AND status = 'processed' AND ($2 = '' OR purpose = $2)
  AND ($3 = '' OR (created_at, id) < (SELECT c.created_at, c.id FROM files c WHERE c.id = $3 AND c.user_id = $1))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: DeleteFile
UPDATE files SET deleted_at = NOW()
WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL
RETURNING id, user_id, purpose, filename, bytes, storage_key, created_at;

-- name: CreateBatch
INSERT INTO batches (id, user_id, principal, endpoint, input_file_id, completion_window, metadata,
                     status, errors, expires_at, failed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NOW() + $10::interval,
        CASE WHEN $8 = 'failed' THEN NOW() END)
RETURNING created_at, expires_at;

-- name: GetBatch
-- A batch of its owner's ($2 '' : any owner's), with its live line counts.
SELECT b.id, b.user_id, b.principal, b.endpoint, b.input_file_id, b.completion_window, b.metadata,
       b.status, b.errors, b.total, b.next_line, b.output_file_id, b.error_file_id, b.created_at, b.expires_at,
       b.in_progress_at, b.finalizing_at, b.completed_at, b.failed_at, b.expired_at, b.cancelling_at, b.cancelled_at,
       (SELECT count(*) FILTER (WHERE r.ok) FROM batch_results r WHERE r.batch_id = b.id),
       (SELECT count(*) FILTER (WHERE NOT r.ok) FROM batch_results r WHERE r.batch_id = b.id)
FROM batches b WHERE b.id = $1 AND ($2 = '' OR b.user_id::text = $2);

-- name: ListBatches
SELECT b.id, b.user_id, b.principal, b.endpoint, b.input_file_id, b.completion_window, b.metadata,
       b.status, b.errors, b.total, b.next_line, b.output_file_id, b.error_file_id, b.created_at, b.expires_at,
       b.in_progress_at, b.finalizing_at, b.completed_at, b.failed_at, b.expired_at, b.cancelling_at, b.cancelled_at,
       (SELECT count(*) FILTER (WHERE r.ok) FROM batch_results r WHERE r.batch_id = b.id),
       (SELECT count(*) FILTER (WHERE NOT r.ok) FROM batch_results r WHERE r.batch_id = b.id)
FROM batches b
WHERE b.user_id = $1
  AND ($2 = '' OR (b.created_at, b.id) < (SELECT c.created_at, c.id FROM batches c WHERE c.id = $2 AND c.user_id = $1))
ORDER BY b.created_at DESC, b.id DESC
LIMIT $3;

-- name: CancelBatch
-- A batch not yet ended starts cancelling (the driver stops it); any other
-- is left as it is.
UPDATE batches SET status = 'cancelling', cancelling_at = NOW()
WHERE id = $1 AND user_id = $2 AND status IN ('validating', 'in_progress')
RETURNING id;

-- name: ClaimBatch
-- One unfinished batch no live driver holds, now held by $1 until the
-- lease; SKIP LOCKED so drivers claiming at once take different batches.
UPDATE batches SET lease_owner = $1, lease_until = NOW() + $2::interval
WHERE id = (
    SELECT id FROM batches
    WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')
      AND (lease_until IS NULL OR lease_until < NOW())
    ORDER BY created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: RenewBatch
-- Extends the driver's lease; no row: another driver holds it now.
UPDATE batches SET lease_until = NOW() + $3::interval
WHERE id = $1 AND lease_owner = $2
RETURNING status;

-- name: ReleaseBatch
UPDATE batches SET lease_until = NULL WHERE id = $1 AND lease_owner = $2;

-- name: StartBatch
-- Validation done: the lines are counted and the batch runs (or fails).
UPDATE batches SET status = $3, total = $4, errors = $5,
    in_progress_at = CASE WHEN $3 = 'in_progress' THEN NOW() END,
    failed_at = CASE WHEN $3 = 'failed' THEN NOW() END
WHERE id = $1 AND lease_owner = $2 AND status = 'validating'
RETURNING id;

-- name: AdvanceBatch
-- Lines before $3 are admitted and enqueued (or refused).
UPDATE batches SET next_line = GREATEST(next_line, $3)
WHERE id = $1 AND lease_owner = $2
RETURNING id;

-- name: SetBatchStatus
-- finalizing, cancelling (the window passed): the first time only.
UPDATE batches SET status = $3,
    finalizing_at = CASE WHEN $3 = 'finalizing' THEN COALESCE(finalizing_at, NOW()) ELSE finalizing_at END,
    cancelling_at = CASE WHEN $3 = 'cancelling' THEN COALESCE(cancelling_at, NOW()) ELSE cancelling_at END
WHERE id = $1 AND lease_owner = $2
RETURNING id;

-- name: AddBatchResults
-- Line outcomes; a line recorded before keeps its first outcome.
INSERT INTO batch_results (batch_id, line, ok, body)
SELECT $1, l, o, b FROM unnest($2::int[], $3::bool[], $4::text[]) AS t(l, o, b)
ON CONFLICT (batch_id, line) DO NOTHING;

-- name: BatchResultLines
SELECT line FROM batch_results WHERE batch_id = $1;

-- name: BatchResults
-- The outcomes of one kind (ok or not), in line order.
SELECT body FROM batch_results WHERE batch_id = $1 AND ok = $2 ORDER BY line;

-- name: FinishBatch
-- The batch ends: its output and error files (if any) and its final status.
UPDATE batches SET status = $3, output_file_id = NULLIF($4, ''), error_file_id = NULLIF($5, ''),
    completed_at = CASE WHEN $3 = 'completed' THEN NOW() END,
    cancelled_at = CASE WHEN $3 = 'cancelled' THEN NOW() END,
    expired_at = CASE WHEN $3 = 'expired' THEN NOW() END,
    failed_at = CASE WHEN $3 = 'failed' THEN NOW() END,
    lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_owner = $2 AND status IN ('in_progress', 'finalizing', 'cancelling')
RETURNING id;
