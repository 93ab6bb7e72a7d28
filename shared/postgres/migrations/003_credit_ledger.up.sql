-- The credit ledger: append-only, one row per money or quota movement. Every
-- balance derives from it (sums); the live counters in Redis are a cache of
-- those sums plus the holds of jobs in flight.
CREATE TABLE credit_ledger (
    id                BIGSERIAL PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users(id),
    -- grant: prepaid credit bought or given; usage: one settled job; cache: a cache hit
    kind              VARCHAR(20) NOT NULL CHECK (kind IN ('grant', 'usage', 'cache')),
    -- the job a usage or cache row settles: at most one row per job, so a
    -- settlement that runs twice writes once
    job_id            TEXT UNIQUE,
    -- calendar month (YYYY-MM) whose included tokens and overage cap it counts against
    period            CHAR(7) NOT NULL,
    model_name        VARCHAR(100),
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    -- included tokens consumed (>= 0)
    included_tokens   BIGINT NOT NULL DEFAULT 0 CHECK (included_tokens >= 0),
    -- prepaid balance change in micro-dollars: + for a grant, - for spending
    credit_micros     BIGINT NOT NULL DEFAULT 0,
    -- postpaid usage in micro-dollars, billed in arrears (>= 0)
    overage_micros    BIGINT NOT NULL DEFAULT 0 CHECK (overage_micros >= 0),
    note              TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX credit_ledger_user_period ON credit_ledger (user_id, period);

-- Append-only: corrections are new rows, never edits.
CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only';
END $$;
CREATE TRIGGER credit_ledger_no_change BEFORE UPDATE OR DELETE ON credit_ledger
    FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only();
