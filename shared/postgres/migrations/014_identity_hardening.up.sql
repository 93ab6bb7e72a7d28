-- Identity hardening (issue 14).

-- The second factor a login passed lives with its refresh-token family, so
-- a refreshed session is an MFA session only if its login was; the token's
-- text says nothing. Tokens issued before this migration count as
-- password-only: an admin logs in again with TOTP.
ALTER TABLE refresh_tokens ADD COLUMN mfa BOOLEAN NOT NULL DEFAULT FALSE;

-- Ceilings on a key's limits that its owner cannot lift: set by an admin
-- (PATCH /v1/admin/keys/{id}) or inherited from the key that created it.
-- The effective limit is the lower of the key's own override and its
-- ceiling, so clearing the override falls back to the ceiling, not the tier.
ALTER TABLE api_keys
    ADD COLUMN max_requests_per_minute BIGINT CHECK (max_requests_per_minute > 0),
    ADD COLUMN max_tokens_per_minute BIGINT CHECK (max_tokens_per_minute > 0),
    ADD COLUMN max_concurrency BIGINT CHECK (max_concurrency > 0);

-- E-mails are stored lowercased and trimmed. A row whose normal form
-- another live row already has (or shares with another row) is left as it
-- is for an admin to resolve: GET /v1/admin/email-collisions lists them.
UPDATE users u SET email = lower(btrim(u.email)), updated_at = NOW()
WHERE u.email <> lower(btrim(u.email))
  AND NOT EXISTS (SELECT 1 FROM users o WHERE o.id <> u.id AND lower(btrim(o.email)) = lower(btrim(u.email)));
