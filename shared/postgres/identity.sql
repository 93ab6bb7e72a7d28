-- Identity queries: users, sessions, MFA, signing keys, key management, audit.

-- name: CreateUser
INSERT INTO users (email, password_hash, subscription_tier, role)
VALUES (lower(btrim($1)), $2, $3, $4)
RETURNING id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at;

-- name: UserAuthByEmail
SELECT id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at,
       COALESCE(password_hash, ''), mfa_enabled, COALESCE(mfa_secret, ''), mfa_last_step
FROM users WHERE email = lower(btrim($1)) AND deleted_at IS NULL;

-- name: UserAuthByID
SELECT id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at,
       COALESCE(password_hash, ''), mfa_enabled, COALESCE(mfa_secret, ''), mfa_last_step
FROM users WHERE id = $1 AND deleted_at IS NULL;

-- name: UserPrincipal
-- The principal of a session token's subject; a deleted user is not found.
SELECT id, email, role, subscription_tier, disabled_at IS NOT NULL,
       COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0),
       COALESCE(overage_cap_micros, 0), period_start, past_due_since
FROM users WHERE id = $1 AND deleted_at IS NULL;

-- name: SetMFASecret
UPDATE users SET mfa_secret = $2, mfa_enabled = FALSE, updated_at = NOW() WHERE id = $1;

-- name: SetMFAEnabled
UPDATE users SET mfa_enabled = $2, updated_at = NOW(),
       mfa_secret = CASE WHEN $2 THEN mfa_secret ELSE NULL END
WHERE id = $1;

-- name: AdvanceMFAStep
-- Accepts a TOTP step only if it is later than every step accepted before:
-- the one statement that makes a code single-use across instances.
UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_last_step < $2;

-- name: DeleteRecoveryCodes
DELETE FROM recovery_codes WHERE user_id = $1;

-- name: InsertRecoveryCodes
INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[]);

-- name: UseRecoveryCode
UPDATE recovery_codes SET used_at = NOW()
WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL;

-- name: InsertRefreshToken
-- $5: the login passed a second factor (kept for the family's whole life).
INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, mfa)
VALUES ($1, $2, $3, $4, $5);

-- name: UseRefreshToken
-- Marks a live refresh token used and returns its family; nothing if the
-- token is unknown, expired, revoked or already used.
UPDATE refresh_tokens SET used_at = NOW()
WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > NOW()
RETURNING family_id, user_id, mfa;

-- name: RefreshTokenFamily
SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1;

-- name: RevokeRefreshFamily
UPDATE refresh_tokens SET revoked_at = NOW() WHERE family_id = $1 AND revoked_at IS NULL;

-- name: RevokeUserRefreshTokens
UPDATE refresh_tokens SET revoked_at = NOW() WHERE user_id = $1 AND revoked_at IS NULL;

-- name: SigningKeys
SELECT kid, public_key, private_key, created_at, retired_at FROM signing_keys
WHERE retired_at IS NULL OR retired_at > NOW() - $1::interval
ORDER BY created_at DESC;

-- name: InsertSigningKey
INSERT INTO signing_keys (kid, public_key, private_key) VALUES ($1, $2, $3);

-- name: RetireSigningKeys
UPDATE signing_keys SET retired_at = NOW() WHERE kid <> $1 AND retired_at IS NULL;

-- name: CreateKey
INSERT INTO api_keys (user_id, key_hash, name, prefix, expires_at, scopes, models, rotated_from,
                      requests_per_minute, tokens_per_minute, concurrency, cache_responses,
                      max_requests_per_minute, max_tokens_per_minute, max_concurrency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULLIF($9::bigint, 0), NULLIF($10::bigint, 0), NULLIF($11::bigint, 0), $12,
        NULLIF($13::bigint, 0), NULLIF($14::bigint, 0), NULLIF($15::bigint, 0))
RETURNING id, created_at;

-- name: LookupKeyAny
-- The principal behind any of the hashes (one per pepper, current first).
-- Limit overrides: the key's where set (never above its ceiling; LEAST
-- skips NULLs, so a cleared override falls back to the ceiling), else the
-- user's, else 0 (the tier's).
SELECT k.id, k.key_hash, u.id, u.email, u.role, u.subscription_tier, u.disabled_at IS NOT NULL, k.scopes, k.models,
       COALESCE(LEAST(k.requests_per_minute, k.max_requests_per_minute), u.requests_per_minute, 0),
       COALESCE(LEAST(k.tokens_per_minute, k.max_tokens_per_minute), u.tokens_per_minute, 0),
       COALESCE(LEAST(k.concurrency, k.max_concurrency), u.concurrency, 0), COALESCE(u.overage_cap_micros, 0), k.cache_responses,
       u.period_start, u.past_due_since
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.key_hash = ANY($1::text[])
  AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > NOW())
  AND u.deleted_at IS NULL
LIMIT 1;

-- name: RehashKey
-- Moves a key to the current pepper the first time it is seen after a rotation.
UPDATE api_keys SET key_hash = $2 WHERE id = $1;

-- name: ListKeys
SELECT id, user_id, COALESCE(name, ''), prefix, created_at, last_used_at, expires_at, revoked_at, scopes, models,
       COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0), cache_responses,
       COALESCE(max_requests_per_minute, 0), COALESCE(max_tokens_per_minute, 0), COALESCE(max_concurrency, 0)
FROM api_keys WHERE user_id = $1 ORDER BY created_at, id;

-- name: GetKey
SELECT id, user_id, COALESCE(name, ''), prefix, created_at, last_used_at, expires_at, revoked_at, scopes, models,
       COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0), cache_responses,
       COALESCE(max_requests_per_minute, 0), COALESCE(max_tokens_per_minute, 0), COALESCE(max_concurrency, 0)
FROM api_keys WHERE id = $1 AND user_id = $2;

-- name: RevokeAnyKey
-- An admin's revocation: no owner check (RBAC checked model:write/*), returns the owner.
UPDATE api_keys SET revoked_at = NOW()
WHERE id = $1 AND revoked_at IS NULL
RETURNING key_hash, user_id;

-- name: ExpireKeyBy
-- A rotated key keeps working until the overlap ends (never longer than it would have).
UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3)
WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
RETURNING key_hash;

-- name: ListUsers
SELECT id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at,
       COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0),
       COALESCE(overage_cap_micros, 0)
FROM users WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1)
  -- $3: a case-insensitive substring of the email ('' matches all); strpos,
  -- not LIKE, so "_" and "%" in a search mean themselves.
  AND ($3::text = '' OR strpos(lower(email), lower($3::text)) > 0)
ORDER BY id LIMIT $2;

-- name: UpdateUser
UPDATE users SET
    role = COALESCE($2, role),
    subscription_tier = COALESCE($3, subscription_tier),
    disabled_at = CASE WHEN $4::boolean IS NULL THEN disabled_at
                       WHEN $4 THEN COALESCE(disabled_at, NOW()) ELSE NULL END,
    -- Limit overrides: $5 says which of $6..$9 to write (a 0 clears it).
    requests_per_minute = CASE WHEN 'rpm' = ANY($5::text[]) THEN NULLIF($6::bigint, 0) ELSE requests_per_minute END,
    tokens_per_minute = CASE WHEN 'tpm' = ANY($5::text[]) THEN NULLIF($7::bigint, 0) ELSE tokens_per_minute END,
    concurrency = CASE WHEN 'conc' = ANY($5::text[]) THEN NULLIF($8::bigint, 0) ELSE concurrency END,
    overage_cap_micros = CASE WHEN 'cap' = ANY($5::text[]) THEN NULLIF($9::bigint, 0) ELSE overage_cap_micros END,
    updated_at = NOW()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at,
          COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0),
          COALESCE(overage_cap_micros, 0);

-- name: UpdateKeyLimits
-- Sets a key's limit overrides ($3 says which of $4..$6 to write; 0 clears);
-- $2 restricts it to one owner (NULL: an admin, any owner); $7 sets the
-- response-cache opt-in and $8 the name (NULL leaves each). $9 (an admin)
-- sets the ceilings to the same values too: only an admin loosens a key.
-- Returns the owner.
UPDATE api_keys SET
    max_requests_per_minute = CASE WHEN $9 AND 'rpm' = ANY($3::text[]) THEN NULLIF($4::bigint, 0) ELSE max_requests_per_minute END,
    max_tokens_per_minute = CASE WHEN $9 AND 'tpm' = ANY($3::text[]) THEN NULLIF($5::bigint, 0) ELSE max_tokens_per_minute END,
    max_concurrency = CASE WHEN $9 AND 'conc' = ANY($3::text[]) THEN NULLIF($6::bigint, 0) ELSE max_concurrency END,
    cache_responses = COALESCE($7::boolean, cache_responses),
    name = COALESCE($8::text, name),
    requests_per_minute = CASE WHEN 'rpm' = ANY($3::text[]) THEN NULLIF($4::bigint, 0) ELSE requests_per_minute END,
    tokens_per_minute = CASE WHEN 'tpm' = ANY($3::text[]) THEN NULLIF($5::bigint, 0) ELSE tokens_per_minute END,
    concurrency = CASE WHEN 'conc' = ANY($3::text[]) THEN NULLIF($6::bigint, 0) ELSE concurrency END
WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2) AND revoked_at IS NULL
RETURNING user_id;

-- name: DeleteUserRevokeKeys
UPDATE api_keys SET revoked_at = NOW() WHERE user_id = $1 AND revoked_at IS NULL;

-- name: DeleteUserScrub
-- Keeps the row (usage and ledger point at it) under a pseudonymous address.
UPDATE users SET email = 'deleted-' || id || '@deleted.invalid', password_hash = NULL,
       mfa_secret = NULL, mfa_enabled = FALSE, disabled_at = COALESCE(disabled_at, NOW()),
       deleted_at = NOW(), updated_at = NOW()
WHERE id = $1 AND deleted_at IS NULL;

-- name: DeleteUserRecovery
DELETE FROM recovery_codes WHERE user_id = $1;

-- name: InsertAudit
INSERT INTO audit_log (actor_id, action, target, outcome, remote, detail)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: ListAudit
SELECT id, at, actor_id::text, action, target, outcome, remote, detail::text
FROM audit_log WHERE ($1::bigint = 0 OR id < $1) ORDER BY id DESC LIMIT $2;

-- name: ExternalPrincipal
SELECT u.id, u.email, u.role, u.subscription_tier, u.disabled_at IS NOT NULL,
       COALESCE(u.requests_per_minute, 0), COALESCE(u.tokens_per_minute, 0), COALESCE(u.concurrency, 0),
       COALESCE(u.overage_cap_micros, 0), u.period_start, u.past_due_since
FROM external_identities e JOIN users u ON u.id = e.user_id
WHERE e.issuer = $1 AND e.subject = $2 AND u.deleted_at IS NULL;

-- name: InsertExternalIdentity
INSERT INTO external_identities (issuer, subject, user_id) VALUES ($1, $2, $3);

-- name: EmailCollisions
-- Live accounts whose e-mails are equal once lowercased and trimmed (the
-- 014 migration left them as they were), for an admin to resolve.
SELECT lower(btrim(email)), array_agg(id::text ORDER BY created_at, id), array_agg(email ORDER BY created_at, id)
FROM users WHERE deleted_at IS NULL
GROUP BY lower(btrim(email)) HAVING count(*) > 1 OR bool_or(email <> lower(btrim(email)))
ORDER BY 1;
