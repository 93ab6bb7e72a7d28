-- Issue 18: prompt tokens the engine served from its prefix cache
-- (usage.prompt_tokens_details.cached_tokens), priced at
-- pricing.<model>.cached_input_tokens.
--
-- On the ledger row: the job's cached prompt tokens (a part of
-- prompt_tokens, never on top of it) and what caching saved the user there,
-- in micro-dollars (the charge with every prompt token at the input price
-- less the charge made, both at the job's tier factor). Rows written
-- before have 0 of both: they were charged at the input price.
ALTER TABLE credit_ledger
    ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0
        CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens),
    ADD COLUMN cached_saved_micros BIGINT NOT NULL DEFAULT 0 CHECK (cached_saved_micros >= 0);

-- The rollups sum the raw rows' cached_tokens (recorded since migration
-- 001) and, at list price, what they saved. Rows folded before count none.
ALTER TABLE usage_hourly
    ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cached_saved_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily
    ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cached_saved_micros BIGINT NOT NULL DEFAULT 0;
