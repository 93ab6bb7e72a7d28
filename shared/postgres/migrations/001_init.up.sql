-- The design's users, api_keys and inference_requests, with what Sluice adds.

CREATE TABLE users (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email             VARCHAR(255) UNIQUE NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    subscription_tier VARCHAR(50) NOT NULL DEFAULT 'free',
    role              VARCHAR(50) NOT NULL DEFAULT 'user',
    disabled_at       TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      UUID NOT NULL REFERENCES users(id),
    -- hex HMAC-SHA-256 of the key under SLUICE_KEY_PEPPER; the key itself is never stored
    key_hash     VARCHAR(255) NOT NULL UNIQUE,
    name         VARCHAR(100),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_used_at TIMESTAMPTZ,
    prefix       VARCHAR(32) NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user_id ON api_keys (user_id);

-- One row per finished job: job_id is the dedupe key that makes usage exactly once.
CREATE TABLE inference_requests (
    id                UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           UUID REFERENCES users(id),
    model_name        VARCHAR(100) NOT NULL,
    tokens_used       INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    timestamp         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    job_id            TEXT NOT NULL UNIQUE,
    api_key_id        UUID,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    status            VARCHAR(20) NOT NULL,
    job_created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX inference_requests_user_time ON inference_requests (user_id, timestamp);
