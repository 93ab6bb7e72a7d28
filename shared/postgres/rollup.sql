-- Queries of the usage rollups, the meter outbox and statements (migration 007).

-- name: RollupLock
-- One runner at a time per schema (tests run one schema each): a second
-- concurrent run gets false and does nothing.
SELECT pg_try_advisory_xact_lock(7301215, hashtext(current_schema()));

-- name: RollupHorizon
-- Every transaction with an xid below the snapshot's xmin has ended
-- (committed or aborted), so no row with a smaller ingest_xid can appear
-- later: the horizon a fold may safely advance to. Read before this
-- transaction takes an xid of its own.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint;

-- name: RollupWatermarks
SELECT COALESCE(max(watermark::text::bigint) FILTER (WHERE name = 'usage'), 0),
       COALESCE(max(watermark::text::bigint) FILTER (WHERE name = 'ledger'), 0)
FROM usage_rollup_state;

-- name: RollupPartitions
SELECT sluice_usage_partitions(now(), $1);

-- name: RollupFold
-- Folds raw usage inserted by transactions in [$1, $2) into the hourly and
-- daily rollups (increments: each raw row is in exactly one range). Buckets
-- are by the job's end time in UTC, so a late event lands in its own hour.
-- cost_micros is list price: tokens times the prices $3..$5, plus the
-- per-request price $6 once per row, plus the engine time times the
-- per-GPU-second price $7, rounded up to a micro-dollar per row as
-- settlement charges it (admission.GPUCharge). A row's cached prompt tokens
-- (a part of its prompt, clamped to it) are priced at $8 instead of the
-- input price, and cached_saved_micros is what that took off.
WITH prices(model, pin, pout, preq, pgpu, pcached) AS (
    SELECT * FROM unnest($3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
), src_rows AS (
    SELECT r.*, LEAST(GREATEST(r.cached_tokens, 0), r.prompt_tokens)::bigint AS cached
    FROM inference_requests r
    WHERE r.ingest_xid >= $1::text::xid8 AND r.ingest_xid < $2::text::xid8
), src AS (
    SELECT COALESCE(r.user_id, '00000000-0000-0000-0000-000000000000'::uuid) AS user_id,
           r.model_name, date_trunc('hour', r.timestamp, 'UTC') AS hour,
           count(*)::bigint AS requests,
           sum(r.prompt_tokens)::bigint AS prompt_tokens,
           sum(r.completion_tokens)::bigint AS completion_tokens,
           sum(r.cached)::bigint AS cached_tokens,
           COALESCE(sum((r.prompt_tokens - r.cached) * p.pin + r.cached * p.pcached
                        + r.completion_tokens::bigint * p.pout + p.preq
                        + (r.engine_ms * p.pgpu + 999) / 1000), 0)::bigint AS cost_micros,
           COALESCE(sum(r.cached * (p.pin - p.pcached)), 0)::bigint AS cached_saved_micros
    FROM src_rows r LEFT JOIN prices p ON p.model = r.model_name
    GROUP BY 1, 2, 3
), h AS (
    INSERT INTO usage_hourly AS t (user_id, model_name, hour, requests, prompt_tokens, completion_tokens, cost_micros,
                                   cached_tokens, cached_saved_micros)
    SELECT user_id, model_name, hour, requests, prompt_tokens, completion_tokens, cost_micros,
           cached_tokens, cached_saved_micros FROM src
    ON CONFLICT (user_id, hour, model_name) DO UPDATE SET
        requests = t.requests + EXCLUDED.requests,
        prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
        cost_micros = t.cost_micros + EXCLUDED.cost_micros,
        cached_tokens = t.cached_tokens + EXCLUDED.cached_tokens,
        cached_saved_micros = t.cached_saved_micros + EXCLUDED.cached_saved_micros
    RETURNING 1
), d AS (
    INSERT INTO usage_daily AS t (user_id, model_name, day, requests, prompt_tokens, completion_tokens, cost_micros,
                                  cached_tokens, cached_saved_micros)
    SELECT user_id, model_name, (hour AT TIME ZONE 'UTC')::date, sum(requests), sum(prompt_tokens),
           sum(completion_tokens), sum(cost_micros), sum(cached_tokens), sum(cached_saved_micros)
    FROM src GROUP BY 1, 2, 3
    ON CONFLICT (user_id, day, model_name) DO UPDATE SET
        requests = t.requests + EXCLUDED.requests,
        prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens,
        cost_micros = t.cost_micros + EXCLUDED.cost_micros,
        cached_tokens = t.cached_tokens + EXCLUDED.cached_tokens,
        cached_saved_micros = t.cached_saved_micros + EXCLUDED.cached_saved_micros
    RETURNING 1
)
SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM d),
       COALESCE(sum(requests), 0)::bigint, COALESCE(sum(prompt_tokens), 0)::bigint,
       COALESCE(sum(completion_tokens), 0)::bigint, COALESCE(sum(cost_micros), 0)::bigint,
       COALESCE(array_agg(DISTINCT (hour AT TIME ZONE 'UTC')::date), '{}')::date[],
       COALESCE(sum(cached_tokens), 0)::bigint, COALESCE(sum(cached_saved_micros), 0)::bigint
FROM src;

-- name: RollupOutbox
-- Postpaid overage of the ledger rows inserted in [$1, $2), one outbox row
-- per user. The identifier names the user and the first ledger id covered:
-- each ledger row is folded once, so it is unique, and it never changes, so
-- a resend is recognised by Stripe.
INSERT INTO meter_outbox (user_id, identifier, value, event_time, first_ledger_id, last_ledger_id)
SELECT user_id, 'sluice-ovg-' || user_id || '-' || min(id), sum(overage_micros)::bigint, max(created_at), min(id), max(id)
FROM credit_ledger
WHERE ingest_xid >= $1::text::xid8 AND ingest_xid < $2::text::xid8 AND overage_micros > 0
GROUP BY user_id
ON CONFLICT (identifier) DO NOTHING;

-- name: RollupAdvance
UPDATE usage_rollup_state SET watermark = $1::text::xid8, runs = runs + 1, updated_at = now();

-- name: RollupReconcile
-- Totals over exactly the days a fold touched ($1): raw usage (up to the
-- horizon $2), the daily and the hourly rollups. They must agree to the
-- token. Each day is an index range, so a few late events from long ago do
-- not make it a scan of everything in between.
WITH days AS (
    SELECT day, (day AT TIME ZONE 'UTC') AS lo, ((day + 1) AT TIME ZONE 'UTC') AS hi FROM unnest($1::date[]) AS d(day)
), raw AS (
    SELECT count(*)::bigint AS r, COALESCE(sum(r.prompt_tokens), 0)::bigint AS p, COALESCE(sum(r.completion_tokens), 0)::bigint AS c
    FROM days JOIN inference_requests r ON r.timestamp >= days.lo AND r.timestamp < days.hi
    WHERE r.ingest_xid < $2::text::xid8
), daily AS (
    SELECT COALESCE(sum(requests), 0)::bigint AS r, COALESCE(sum(prompt_tokens), 0)::bigint AS p,
           COALESCE(sum(completion_tokens), 0)::bigint AS c
    FROM usage_daily WHERE day = ANY($1::date[])
), hourly AS (
    SELECT COALESCE(sum(h.requests), 0)::bigint AS r, COALESCE(sum(h.prompt_tokens + h.completion_tokens), 0)::bigint AS t
    FROM days JOIN usage_hourly h ON h.hour >= days.lo AND h.hour < days.hi
)
SELECT raw.r, raw.p, raw.c, daily.r, daily.p, daily.c, hourly.r, hourly.t FROM raw, daily, hourly;

-- name: RollupReconcileSpan
-- RollupReconcile for days that fill most of their span ($3..$4): one range
-- over the span, filtered to the days, beats an index range per day.
WITH raw AS (
    SELECT count(*)::bigint AS r, COALESCE(sum(prompt_tokens), 0)::bigint AS p, COALESCE(sum(completion_tokens), 0)::bigint AS c
    FROM inference_requests
    WHERE timestamp >= ($3::date AT TIME ZONE 'UTC') AND timestamp < (($4::date + 1) AT TIME ZONE 'UTC')
      AND (timestamp AT TIME ZONE 'UTC')::date = ANY($1::date[]) AND ingest_xid < $2::text::xid8
), daily AS (
    SELECT COALESCE(sum(requests), 0)::bigint AS r, COALESCE(sum(prompt_tokens), 0)::bigint AS p,
           COALESCE(sum(completion_tokens), 0)::bigint AS c
    FROM usage_daily WHERE day = ANY($1::date[])
), hourly AS (
    SELECT COALESCE(sum(requests), 0)::bigint AS r, COALESCE(sum(prompt_tokens + completion_tokens), 0)::bigint AS t
    FROM usage_hourly
    WHERE hour >= ($3::date AT TIME ZONE 'UTC') AND hour < (($4::date + 1) AT TIME ZONE 'UTC')
      AND (hour AT TIME ZONE 'UTC')::date = ANY($1::date[])
)
SELECT raw.r, raw.p, raw.c, daily.r, daily.p, daily.c, hourly.r, hourly.t FROM raw, daily, hourly;

-- name: RollupReconcileLedger
-- The folded jobs against the ledger: succeeded jobs with no ledger row yet
-- (settlement runs apart, or admission is off), and jobs whose ledger row
-- records other token counts (a real difference).
SELECT count(*) FILTER (WHERE l.id IS NULL AND r.status = 'succeeded'),
       count(*) FILTER (WHERE l.id IS NOT NULL AND (l.prompt_tokens <> r.prompt_tokens OR l.completion_tokens <> r.completion_tokens))
FROM inference_requests r LEFT JOIN credit_ledger l ON l.job_id = r.job_id AND l.kind IN ('usage', 'cache')
WHERE r.ingest_xid >= $1::text::xid8 AND r.ingest_xid < $2::text::xid8;

-- name: MeterPending
-- Outbox rows due for sending, with the user's Stripe customer.
SELECT o.id, o.user_id, o.identifier, o.value, o.event_time, o.attempts, u.stripe_customer_id
FROM meter_outbox o JOIN users u ON u.id = o.user_id
WHERE o.status = 'pending' AND o.next_attempt_at <= now()
ORDER BY o.id LIMIT $1;

-- name: MeterSent
UPDATE meter_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, stripe_customer_id = $2, last_error = $3
WHERE id = $1 AND status = 'pending';

-- name: MeterFailed
-- A failed send stays pending; the next attempt waits $3 seconds.
UPDATE meter_outbox SET attempts = attempts + $4, last_error = $2,
    next_attempt_at = now() + make_interval(secs => $3)
WHERE id = $1 AND status = 'pending';

-- name: UsageDaily
SELECT day, model_name, requests, prompt_tokens, completion_tokens, cost_micros, cached_tokens, cached_saved_micros
FROM usage_daily WHERE user_id = $1 AND day BETWEEN $2::date AND $3::date
ORDER BY day, model_name;

-- name: UsageByKey
-- A user's raw usage over the UTC days $2..$3 per API key (the rollups have
-- no key), at list price as RollupFold prices it (prices $4..$9 as its
-- $3..$8); usage with no key (a console session) is one row with an empty
-- id. An index range on (user_id, timestamp).
WITH prices(model, pin, pout, preq, pgpu, pcached) AS (
    SELECT * FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
), src_rows AS (
    SELECT r.*, LEAST(GREATEST(r.cached_tokens, 0), r.prompt_tokens)::bigint AS cached
    FROM inference_requests r
    WHERE r.user_id = $1 AND r.timestamp >= ($2::date AT TIME ZONE 'UTC') AND r.timestamp < (($3::date + 1) AT TIME ZONE 'UTC')
), per AS (
    SELECT r.api_key_id, count(*)::bigint AS requests, sum(r.prompt_tokens)::bigint AS pt,
           sum(r.completion_tokens)::bigint AS ct, sum(r.cached)::bigint AS cached,
           COALESCE(sum((r.prompt_tokens - r.cached) * p.pin + r.cached * p.pcached
                        + r.completion_tokens::bigint * p.pout + p.preq
                        + (r.engine_ms * p.pgpu + 999) / 1000), 0)::bigint AS cost,
           COALESCE(sum(r.cached * (p.pin - p.pcached)), 0)::bigint AS saved
    FROM src_rows r LEFT JOIN prices p ON p.model = r.model_name
    GROUP BY r.api_key_id
)
SELECT COALESCE(per.api_key_id::text, ''), COALESCE(k.name, ''), COALESCE(k.prefix, ''),
       per.requests, per.pt, per.ct, per.cached, per.cost, per.saved
FROM per LEFT JOIN api_keys k ON k.id = per.api_key_id
ORDER BY per.requests DESC, 1;

-- name: Account
SELECT id, subscription_tier, period_start, period_end, COALESCE(overage_cap_micros, 0), stripe_customer_id,
       past_due_since
FROM users WHERE id = $1;

-- name: Statements
-- Monthly statements (calendar months, UTC), newest first: usage from the
-- daily rollup; money from the ledger (with the prompt tokens charged at the
-- cached price and what that saved); subscription fees from Stripe invoices.
WITH u AS (
    SELECT date_trunc('month', day)::date AS m, sum(requests)::bigint AS requests,
           sum(prompt_tokens)::bigint AS pt, sum(completion_tokens)::bigint AS ct
    FROM usage_daily WHERE user_id = $1 GROUP BY 1
), l AS (
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS m,
           sum(included_tokens)::bigint AS inc,
           (-sum(credit_micros) FILTER (WHERE kind IN ('usage', 'cache')))::bigint AS used,
           sum(credit_micros) FILTER (WHERE kind IN ('grant', 'clawback', 'reversal') AND stripe_ref IS NOT NULL)::bigint AS bought,
           sum(overage_micros)::bigint AS ovg,
           sum(cached_tokens)::bigint AS cached, sum(cached_saved_micros)::bigint AS saved,
           sum(prompt_tokens) FILTER (WHERE kind = 'usage')::bigint AS lpt
    FROM credit_ledger WHERE user_id = $1 GROUP BY 1
), i AS (
    SELECT date_trunc('month', COALESCE(period_start, event_created) AT TIME ZONE 'UTC')::date AS m,
           sum(amount_paid_micros) FILTER (WHERE subscription_id IS NOT NULL)::bigint AS subs
    FROM billing_invoices WHERE user_id = $1 GROUP BY 1
), months AS (SELECT m FROM u UNION SELECT m FROM l UNION SELECT m FROM i)
SELECT months.m, COALESCE(u.requests, 0), COALESCE(u.pt, 0), COALESCE(u.ct, 0), COALESCE(l.inc, 0),
       COALESCE(l.used, 0), COALESCE(l.bought, 0), COALESCE(l.ovg, 0), COALESCE(i.subs, 0),
       COALESCE(l.cached, 0), COALESCE(l.saved, 0), COALESCE(l.lpt, 0)
FROM months LEFT JOIN u USING (m) LEFT JOIN l USING (m) LEFT JOIN i USING (m)
ORDER BY months.m DESC LIMIT $2;

-- name: UserInvoices
SELECT id, status, amount_paid_micros, COALESCE(hosted_invoice_url, ''),
       date_trunc('month', COALESCE(period_start, event_created) AT TIME ZONE 'UTC')::date
FROM billing_invoices WHERE user_id = $1 ORDER BY COALESCE(period_start, event_created) DESC;

-- name: Revenue
-- Money by day over the last $1 days (UTC): credit bought through Stripe
-- (net of clawbacks), subscription fees paid, usage charged (prepaid credit
-- spent plus postpaid) and the postpaid part alone.
WITH days AS (
    SELECT d::date AS day FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($1::int - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') d
), l AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
           sum(credit_micros) FILTER (WHERE kind IN ('grant', 'clawback', 'reversal') AND stripe_ref IS NOT NULL)::bigint AS bought,
           (sum(overage_micros - credit_micros) FILTER (WHERE kind IN ('usage', 'cache')))::bigint AS used,
           sum(overage_micros)::bigint AS ovg
    FROM credit_ledger WHERE created_at >= (now() AT TIME ZONE 'UTC')::date - ($1::int - 1) GROUP BY 1
), i AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(amount_paid_micros)::bigint AS subs
    FROM billing_invoices WHERE subscription_id IS NOT NULL AND created_at >= (now() AT TIME ZONE 'UTC')::date - ($1::int - 1)
    GROUP BY 1
)
SELECT days.day, COALESCE(l.bought, 0), COALESCE(i.subs, 0), COALESCE(l.used, 0), COALESCE(l.ovg, 0)
FROM days LEFT JOIN l USING (day) LEFT JOIN i USING (day)
ORDER BY days.day DESC;

-- name: UsageFoldedAt
-- When the rollup last folded raw usage into the rollups (NULL: never).
SELECT CASE WHEN runs > 0 THEN updated_at END FROM usage_rollup_state WHERE name = 'usage';
