-- Identity: passwords, MFA, sessions, signing keys, key scopes, audit log.

ALTER TABLE users
    ADD COLUMN password_hash  TEXT,            -- PHC argon2id string; NULL for keys-only or external users
    ADD COLUMN mfa_secret     TEXT,            -- TOTP secret sealed with a key derived from the pepper
    ADD COLUMN mfa_enabled    BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN mfa_last_step  BIGINT NOT NULL DEFAULT 0, -- last accepted TOTP step: a code is never accepted twice
    ADD COLUMN deleted_at     TIMESTAMPTZ;

-- Recovery codes: HMAC of each code; used_at set once.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL REFERENCES users(id),
    code_hash TEXT NOT NULL,
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

ALTER TABLE api_keys
    ADD COLUMN scopes       TEXT[] NOT NULL DEFAULT '{}', -- empty: the owner's permissions
    ADD COLUMN models       TEXT[] NOT NULL DEFAULT '{}', -- empty: every model
    ADD COLUMN rotated_from UUID REFERENCES api_keys(id);

-- Refresh tokens: opaque, stored as HMAC, rotated on every use. A family is
-- one login; reusing a rotated token revokes the whole family (RFC 9700).
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    family_id   UUID NOT NULL,
    user_id     UUID NOT NULL REFERENCES users(id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,   -- set when rotated: presenting it again is reuse
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- JWT signing keys (Ed25519). The private key is sealed with a key derived
-- from the pepper; retired keys stay until their last token has expired.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    private_key BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    retired_at  TIMESTAMPTZ    -- no longer signs; published until retired_at + token lifetime
);

-- Append-only audit log: who did what to what, when, from where, outcome.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    actor_id   UUID,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    outcome    TEXT NOT NULL,
    remote     TEXT NOT NULL DEFAULT '',
    detail     JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
