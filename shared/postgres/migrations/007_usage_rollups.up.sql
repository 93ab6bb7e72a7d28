-- Usage rollups (issue 6): raw usage partitioned by month, hourly and daily
-- rollups, the rollup watermark, and the Stripe meter outbox.

-- 1. inference_requests becomes a table partitioned by RANGE (job_created_at),
-- one partition per calendar month plus a DEFAULT partition, so a year of
-- usage stays fast (old months can be detached or dropped whole).
-- PostgreSQL wants the partition column in every unique key: the dedupe key
-- that makes usage exactly once is now (job_id, job_created_at). The job's
-- creation time is fixed at enqueue and carried in the job, so a redelivered
-- job writes the same pair and still conflicts.
--
-- ingest_xid is the inserting transaction's id. The rollup's watermark is an
-- xid horizon, not event time (see functions/usage-rollup/fold.go): late
-- events still fold, and a transaction that commits late is never skipped.
ALTER TABLE inference_requests RENAME TO inference_requests_old;
ALTER INDEX IF EXISTS inference_requests_user_time RENAME TO inference_requests_old_user_time;
ALTER INDEX IF EXISTS inference_requests_time RENAME TO inference_requests_old_time;
ALTER INDEX IF EXISTS inference_requests_requested_model_idx RENAME TO inference_requests_old_requested_model_idx;

CREATE TABLE inference_requests (
    id                UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id           UUID REFERENCES users(id),
    model_name        VARCHAR(100) NOT NULL,
    tokens_used       INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    timestamp         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    job_id            TEXT NOT NULL,
    api_key_id        UUID,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    status            VARCHAR(20) NOT NULL,
    job_created_at    TIMESTAMPTZ NOT NULL,
    requested_model   TEXT,
    ingest_xid        XID8 NOT NULL DEFAULT pg_current_xact_id()
) PARTITION BY RANGE (job_created_at);
-- Unique indexes, not constraints: pg_restore --clean (sluice restore)
-- cannot drop a partition's inherited constraint, but drops these.
CREATE UNIQUE INDEX inference_requests_id ON inference_requests (id, job_created_at);
CREATE UNIQUE INDEX inference_requests_job ON inference_requests (job_id, job_created_at);

CREATE TABLE inference_requests_default PARTITION OF inference_requests DEFAULT;

-- sluice_usage_partitions creates the monthly partitions from the month of
-- from_ts through months_ahead months after now (idempotent). A month whose
-- rows already sit in the DEFAULT partition cannot be created (PostgreSQL
-- refuses); it is skipped with a notice and its rows stay in DEFAULT.
CREATE FUNCTION sluice_usage_partitions(from_ts TIMESTAMPTZ, months_ahead INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    m       DATE := date_trunc('month', from_ts AT TIME ZONE 'UTC')::date;
    last    DATE := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => months_ahead))::date;
    name    TEXT;
    created INT := 0;
BEGIN
    WHILE m <= last LOOP
        name := 'inference_requests_' || to_char(m, 'YYYYMM');
        IF to_regclass(quote_ident(current_schema()) || '.' || name) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF inference_requests FOR VALUES FROM (%L) TO (%L)',
                    name, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            EXCEPTION
                WHEN check_violation THEN
                    RAISE NOTICE 'partition % skipped: the default partition holds rows of that month', name;
                WHEN duplicate_table THEN
                    NULL; -- a concurrent run created it
            END;
        END IF;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN created;
END $$;

-- Partitions for the months already used, and three ahead.
SELECT sluice_usage_partitions(COALESCE((SELECT min(job_created_at) FROM inference_requests_old), now()), 3);

INSERT INTO inference_requests
    (id, user_id, model_name, tokens_used, latency_ms, timestamp, job_id, api_key_id, prompt_tokens,
     completion_tokens, cached_tokens, status, job_created_at, requested_model)
SELECT id, user_id, model_name, tokens_used, latency_ms, timestamp, job_id, api_key_id, prompt_tokens,
       completion_tokens, cached_tokens, status, job_created_at, requested_model
FROM inference_requests_old;
DROP TABLE inference_requests_old;

CREATE INDEX inference_requests_user_time ON inference_requests (user_id, timestamp);
CREATE INDEX inference_requests_time ON inference_requests (timestamp);
CREATE INDEX inference_requests_requested_model_idx
    ON inference_requests (requested_model, model_name) WHERE requested_model IS NOT NULL;
-- The rollup reads what was inserted between two xid horizons.
CREATE INDEX inference_requests_ingest ON inference_requests (ingest_xid);

-- The ledger gets the same ingest xid, so the meter outbox folds the
-- overage of exactly the ledger rows committed since the last run. Existing
-- rows take this migration's xid (a rewrite, not an UPDATE: the append-only
-- trigger does not fire).
ALTER TABLE credit_ledger ADD COLUMN ingest_xid XID8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX credit_ledger_ingest ON credit_ledger (ingest_xid);
-- Revenue by day and statements by month read the ledger by time.
CREATE INDEX credit_ledger_created ON credit_ledger (created_at);

-- 2. Rollups per user and model. cost_micros is list price (the pricing
-- block at fold time: prompt and completion tokens times the model's
-- prices); what a user actually paid is in the ledger (statements read it).
-- Rows with no user fold under the nil UUID.
CREATE TABLE usage_hourly (
    user_id           UUID NOT NULL,
    model_name        VARCHAR(100) NOT NULL,
    hour              TIMESTAMPTZ NOT NULL,
    requests          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_micros       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hour, model_name)
);
CREATE TABLE usage_daily (
    user_id           UUID NOT NULL,
    model_name        VARCHAR(100) NOT NULL,
    day               DATE NOT NULL,
    requests          BIGINT NOT NULL DEFAULT 0,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_micros       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, model_name)
);
CREATE INDEX usage_daily_day ON usage_daily (day);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- 3. Watermarks: the xid horizon up to which raw usage ('usage') and the
-- ledger ('ledger') have been folded. Moved in the fold's transaction.
CREATE TABLE usage_rollup_state (
    name       TEXT PRIMARY KEY,
    watermark  XID8 NOT NULL,
    runs       BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
INSERT INTO usage_rollup_state (name, watermark) VALUES ('usage', '0'), ('ledger', '0');

-- 4. The Stripe Billing Meter outbox: postpaid overage to report. A row is
-- appended in the fold's transaction; the sender posts it after commit with
-- its identifier, which never changes, so a resend is deduplicated by Stripe.
CREATE TABLE meter_outbox (
    id              BIGSERIAL PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users(id),
    identifier      TEXT NOT NULL UNIQUE,
    -- micro-dollars of postpaid overage (the meter's unit)
    value           BIGINT NOT NULL CHECK (value > 0),
    event_time      TIMESTAMPTZ NOT NULL,
    first_ledger_id BIGINT NOT NULL,
    last_ledger_id  BIGINT NOT NULL,
    status          VARCHAR(10) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_error      TEXT,
    stripe_customer_id TEXT,
    sent_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX meter_outbox_pending ON meter_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX meter_outbox_user ON meter_outbox (user_id, created_at);
