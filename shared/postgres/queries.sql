-- name: UpsertUser
-- Creates the user if needed; an existing user keeps its role and tier.
INSERT INTO users (email, subscription_tier, role)
VALUES (lower($1), $2, $3)
ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email
RETURNING id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at;

-- name: CreateAPIKey
INSERT INTO api_keys (user_id, key_hash, name, prefix, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, created_at;

-- name: LookupKey
-- The principal behind a key hash, or nothing if the key is revoked or expired.
SELECT k.id, u.id, u.email, u.role, u.subscription_tier, u.disabled_at IS NOT NULL
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.key_hash = $1
  AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > NOW());

-- name: RevokeKey
UPDATE api_keys SET revoked_at = NOW()
WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
RETURNING key_hash;

-- name: TouchKeys
-- Batched last-used times: one statement for every key seen since the last flush.
UPDATE api_keys SET last_used_at = $2
WHERE id = ANY($1::uuid[]) AND (last_used_at IS NULL OR last_used_at < $2);

-- name: InsertUsage
-- A batch of usage events; a job already recorded is skipped, so redelivery
-- never counts twice.
INSERT INTO inference_requests
    (job_id, user_id, api_key_id, model_name, prompt_tokens, completion_tokens,
     cached_tokens, tokens_used, latency_ms, status, job_created_at, timestamp,
     requested_model, engine_ms, service_tier)
SELECT j, u, NULLIF(k, '')::uuid, m, p, c, ca, p + c, l, s, cr, e, NULLIF(rq, ''), em, NULLIF(st, '')
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::int[],
            $7::int[], $8::int[], $9::text[], $10::timestamptz[], $11::timestamptz[],
            $12::text[], $13::bigint[], $14::text[])
     AS t(j, u, k, m, p, c, ca, l, s, cr, e, rq, em, st)
ON CONFLICT (job_id, job_created_at) DO NOTHING;

-- name: UsageForUser
SELECT job_id, model_name, prompt_tokens, completion_tokens, status, latency_ms, cached_tokens
FROM inference_requests WHERE user_id = $1 ORDER BY timestamp;

-- name: ActiveUsers
-- Distinct users with usage in the last hour, day and 30 days.
SELECT count(DISTINCT user_id) FILTER (WHERE timestamp > now() - interval '1 hour'),
       count(DISTINCT user_id) FILTER (WHERE timestamp > now() - interval '24 hours'),
       count(DISTINCT user_id)
FROM inference_requests WHERE timestamp > now() - interval '30 days';

-- name: CallsPerUser
-- The distribution of requests per active user over the last day, and the
-- top $1 users' requests and tokens (ranks only: no user id leaves here).
WITH per AS (
    SELECT user_id, count(*) AS calls, sum(tokens_used) AS tokens
    FROM inference_requests WHERE timestamp > now() - interval '24 hours'
    GROUP BY user_id
), top AS (
    SELECT calls, tokens FROM per ORDER BY calls DESC, tokens DESC LIMIT $1
)
SELECT 'q' AS kind, coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY calls), 0)::float8,
       coalesce(percentile_cont(0.9) WITHIN GROUP (ORDER BY calls), 0)::float8,
       coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY calls), 0)::float8,
       coalesce(max(calls), 0)::float8
FROM per
UNION ALL
SELECT 't', calls::float8, tokens::float8, 0, 0 FROM top;

-- name: UsageByModel
-- Requests and tokens per model over the last day, for revenue and cost
-- (cached prompt tokens, clamped to the prompt, at their own price).
SELECT model_name, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
       coalesce(sum(LEAST(GREATEST(cached_tokens, 0), prompt_tokens)), 0)::bigint
FROM inference_requests WHERE timestamp > now() - interval '24 hours'
GROUP BY model_name;
