-- Queries of the credit ledger (migration 003).

-- name: LedgerGrant
INSERT INTO credit_ledger (user_id, kind, period, credit_micros, note)
VALUES ($1, 'grant', $2, $3, $4)
RETURNING id;

-- name: LedgerSettle
-- A batch of settled jobs, one row per job (cached_tokens: the part of
-- the prompt served from the engine's prefix cache, and what its price saved); a settlement that runs again
-- writes nothing. Credit spent (debt included) is stored negated. A row
-- with debt, tokens past the hold, or no hold is also an audit entry. It
-- returns the job ids of the rows written.
WITH ins AS (
    INSERT INTO credit_ledger (user_id, kind, job_id, period, model_name, prompt_tokens,
                               completion_tokens, included_tokens, credit_micros, overage_micros,
                               debt_micros, excess_tokens, unheld, service_tier, cached_tokens,
                               cached_saved_micros)
    SELECT u, k, j, p, m, pt, ct, it, -(cr + db), ov, db, ex, uh, NULLIF(st, ''), ca, cs
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bool[], $14::text[],
                $15::bigint[], $16::bigint[])
         AS t(u, k, j, p, m, pt, ct, it, cr, ov, db, ex, uh, st, ca, cs)
    ON CONFLICT (job_id) DO NOTHING
    RETURNING user_id, job_id, model_name, debt_micros, excess_tokens, unheld
), audit AS (
    INSERT INTO audit_log (actor_id, action, target, outcome, detail)
    SELECT user_id, 'ledger.settle_unbounded', job_id, CASE WHEN debt_micros > 0 THEN 'debt' ELSE 'charged' END,
           jsonb_build_object('model', model_name, 'debt_micros', debt_micros,
                              'excess_tokens', excess_tokens, 'unheld', unheld)
    FROM ins WHERE debt_micros > 0 OR excess_tokens > 0 OR unheld
)
SELECT job_id FROM ins;

-- name: LedgerHasJob
-- Whether a job's settlement is in the ledger.
SELECT EXISTS (SELECT 1 FROM credit_ledger WHERE job_id = $1);

-- name: LedgerBalance
-- A user's balances as the ledger says: prepaid credit (all time), included
-- tokens and overage used in one period, and the grant and clawback ids (the
-- live counters record which they hold, so none is ever counted twice).
SELECT COALESCE(SUM(credit_micros), 0)::bigint,
       COALESCE(SUM(included_tokens) FILTER (WHERE period = $2), 0)::bigint,
       COALESCE(SUM(overage_micros) FILTER (WHERE period = $2), 0)::bigint,
       COALESCE(array_agg(id) FILTER (WHERE kind IN ('grant', 'clawback', 'reversal')), '{}')::bigint[],
       (SELECT count(*) FROM billing_disputes d WHERE d.user_id = $1 AND d.open)
FROM credit_ledger WHERE user_id = $1;

-- name: UserByEmail
SELECT id, email, role, subscription_tier, disabled_at IS NOT NULL, created_at,
       COALESCE(requests_per_minute, 0), COALESCE(tokens_per_minute, 0), COALESCE(concurrency, 0),
       COALESCE(overage_cap_micros, 0)
FROM users WHERE email = lower($1);
