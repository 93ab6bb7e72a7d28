-- Per-user and per-key overrides of the tier's limits (NULL: not set, the
-- next level decides: key, then user, then tier). The verifier reads them
-- with the principal, so admission needs no extra lookup.
ALTER TABLE users
    ADD COLUMN requests_per_minute BIGINT CHECK (requests_per_minute > 0),
    ADD COLUMN tokens_per_minute BIGINT CHECK (tokens_per_minute > 0),
    ADD COLUMN concurrency BIGINT CHECK (concurrency > 0),
    ADD COLUMN overage_cap_micros BIGINT CHECK (overage_cap_micros > 0);

ALTER TABLE api_keys
    ADD COLUMN requests_per_minute BIGINT CHECK (requests_per_minute > 0),
    ADD COLUMN tokens_per_minute BIGINT CHECK (tokens_per_minute > 0),
    ADD COLUMN concurrency BIGINT CHECK (concurrency > 0);
