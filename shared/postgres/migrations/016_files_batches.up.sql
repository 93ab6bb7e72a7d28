-- Files and Batches (issue 17): the OpenAI Files and Batch APIs. A file's
-- content lives in object storage (or the dev state folder); its metadata
-- here. A batch's progress lives here too, so any worker resumes it after a
-- crash: the claim (lease_owner, lease_until) lets one driver work a batch
-- at a time, next_line is how far its lines were admitted and enqueued, and
-- batch_results holds each line's outcome once (its primary key).

CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    filename    TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    storage_key TEXT NOT NULL,
    -- 'uploading': a presigned upload not completed yet (not listed, not
    -- usable); 'processed': stored and checked.
    status      TEXT NOT NULL DEFAULT 'processed',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX files_user_created ON files (user_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE batches (
    id                TEXT PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- Who created it (tier, key, allowlist, limits, period), as the driver
    -- admits its lines for them.
    principal         JSONB NOT NULL,
    endpoint          TEXT NOT NULL,
    input_file_id     TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    metadata          JSONB,
    status            TEXT NOT NULL,
    errors            JSONB,
    total             INT NOT NULL DEFAULT 0,
    next_line         INT NOT NULL DEFAULT 0,
    output_file_id    TEXT,
    error_file_id     TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at        TIMESTAMPTZ NOT NULL,
    in_progress_at    TIMESTAMPTZ,
    finalizing_at     TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    failed_at         TIMESTAMPTZ,
    expired_at        TIMESTAMPTZ,
    cancelling_at     TIMESTAMPTZ,
    cancelled_at      TIMESTAMPTZ,
    lease_owner       TEXT,
    lease_until       TIMESTAMPTZ
);
CREATE INDEX batches_user_created ON batches (user_id, created_at DESC, id DESC);
CREATE INDEX batches_active ON batches (created_at)
    WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');

CREATE TABLE batch_results (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    line     INT NOT NULL,
    ok       BOOLEAN NOT NULL,
    -- The output (ok) or error file's JSONL line, exactly as written.
    body     TEXT NOT NULL,
    PRIMARY KEY (batch_id, line)
);
