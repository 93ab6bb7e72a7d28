-- Queries of Stripe billing (migrations 006 and 011). Every write runs in
-- the transaction that records the webhook event, so an event's effects and
-- its "processed" mark commit together or not at all.

-- name: RecordStripeEvent
-- Marks an event processed; no row back means it already was (a duplicate).
INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: StripeEventProcessed
SELECT EXISTS (SELECT 1 FROM stripe_events WHERE id = $1);

-- name: UserIDByCustomer
SELECT id FROM users WHERE stripe_customer_id = $1 AND deleted_at IS NULL;

-- name: BillingUser
-- What Checkout and the portal need: the user's email and Stripe customer.
SELECT id, email, COALESCE(stripe_customer_id, '') FROM users WHERE id = $1 AND deleted_at IS NULL;

-- name: SetStripeCustomer
-- Records the user's Stripe customer unless one is already set; returns the
-- customer the user ends up with (a concurrent checkout may have won).
UPDATE users SET stripe_customer_id = COALESCE(stripe_customer_id, $2), updated_at = NOW()
WHERE id = $1
RETURNING stripe_customer_id;

-- name: LockUser
-- Serialises money changes of one user within a webhook transaction.
SELECT id FROM users WHERE id = $1 FOR UPDATE;

-- name: BillingGrant
-- A purchased credit grant; a Checkout Session pays once however often its
-- event arrives (stripe_ref is unique).
INSERT INTO credit_ledger (user_id, kind, period, credit_micros, note, stripe_ref, stripe_payment)
VALUES ($1, 'grant', $2, $3, $4, $5, NULLIF($6, ''))
ON CONFLICT (stripe_ref) DO NOTHING
RETURNING id;

-- name: ClawbackRoom
-- How much a clawback for a payment may take: the user's unused credit, the
-- credit that payment granted, and what earlier clawbacks for it took.
SELECT COALESCE(SUM(credit_micros), 0)::bigint,
       COALESCE(SUM(credit_micros) FILTER (WHERE kind = 'grant' AND stripe_payment = $2), 0)::bigint,
       COALESCE(-SUM(credit_micros) FILTER (WHERE kind = 'clawback' AND stripe_payment = $2), 0)::bigint
FROM credit_ledger WHERE user_id = $1;

-- name: BillingClawback
-- Takes credit back (credit_micros <= 0); recorded once per refund or dispute.
INSERT INTO credit_ledger (user_id, kind, period, credit_micros, note, stripe_ref, stripe_payment)
VALUES ($1, 'clawback', $2, $3, $4, $5, NULLIF($6, ''))
ON CONFLICT (stripe_ref) DO NOTHING
RETURNING id;

-- name: UpsertSubscription
-- Stores a subscription as an event describes it, unless a newer event
-- already did (delivery is unordered). At the same second a created event
-- yields to any other ($9: the incoming event is weak). No row back: stale.
INSERT INTO subscriptions AS s (id, user_id, tier, status, current_period_start, current_period_end,
                                cancel_at_period_end, event_created)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET
    tier = EXCLUDED.tier, status = EXCLUDED.status,
    current_period_start = EXCLUDED.current_period_start, current_period_end = EXCLUDED.current_period_end,
    cancel_at_period_end = EXCLUDED.cancel_at_period_end, event_created = EXCLUDED.event_created,
    updated_at = NOW()
WHERE s.event_created < EXCLUDED.event_created OR (s.event_created = EXCLUDED.event_created AND NOT $9::bool)
RETURNING id;

-- name: SetUserTier
-- The tier a subscription change gives; back on free, the subscription
-- period ends too (the calendar month counts again).
UPDATE users SET subscription_tier = $2::text, updated_at = NOW(),
       period_start = CASE WHEN $2::text = 'free' THEN NULL ELSE period_start END,
       period_end = CASE WHEN $2::text = 'free' THEN NULL ELSE period_end END,
       past_due_since = CASE WHEN $2::text = 'free' THEN NULL ELSE past_due_since END
WHERE id = $1;

-- name: UpsertInvoice
INSERT INTO billing_invoices AS i (id, user_id, subscription_id, status, period_start, period_end,
                                   amount_due_micros, amount_paid_micros, currency, hosted_invoice_url, event_created)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, NULLIF($10, ''), $11)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
    amount_due_micros = EXCLUDED.amount_due_micros, amount_paid_micros = EXCLUDED.amount_paid_micros,
    hosted_invoice_url = EXCLUDED.hosted_invoice_url, event_created = EXCLUDED.event_created, updated_at = NOW()
WHERE i.event_created <= EXCLUDED.event_created;

-- name: StartPeriod
-- A paid invoice starts a subscription period: the user's included tokens
-- count against it from now on. An older period arriving late changes
-- nothing; a payment clears the past-due mark either way.
UPDATE users SET
    period_start = CASE WHEN period_start IS NULL OR period_start < $2 THEN $2 ELSE period_start END,
    period_end = CASE WHEN period_start IS NULL OR period_start < $2 THEN $3 ELSE period_end END,
    past_due_since = NULL, updated_at = NOW()
WHERE id = $1;

-- name: MarkPastDue
UPDATE users SET past_due_since = COALESCE(past_due_since, $2), updated_at = NOW() WHERE id = $1;

-- name: UserBilling
-- A user's billing state (tests and the CLI).
SELECT subscription_tier, COALESCE(stripe_customer_id, ''), period_start, period_end, past_due_since
FROM users WHERE id = $1;

-- name: UserIDByPayment
-- The user a credit purchase's payment granted to (refunds and disputes
-- name the payment, not always the customer).
SELECT user_id FROM credit_ledger WHERE stripe_payment = $1 AND kind = 'grant' LIMIT 1;

-- name: LedgerByRefs
-- The ledger rows of Stripe objects, to re-apply them to the live counters
-- when an event is delivered again after the counters missed them.
SELECT id, user_id, credit_micros FROM credit_ledger WHERE stripe_ref = ANY($1::text[]);

-- name: OpenDispute
-- Records a card dispute as open (once per dispute id); no row back: known already.
INSERT INTO billing_disputes (id, user_id, payment, amount_micros, status)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: CloseDispute
-- Closes a dispute (won, lost, ...); no row back: unknown or closed already.
-- It returns the user and what the dispute's clawback took.
UPDATE billing_disputes d SET open = false, status = $2, closed_at = NOW()
WHERE d.id = $1 AND d.open
RETURNING d.user_id,
          COALESCE((SELECT -credit_micros FROM credit_ledger WHERE stripe_ref = 'dispute:' || $1), 0)::bigint;

-- name: OpenDisputes
-- A user's open card disputes.
SELECT count(*) FROM billing_disputes WHERE user_id = $1 AND open;

-- name: BillingReversal
-- Gives back what a clawback took (a dispute won); recorded once per ref.
INSERT INTO credit_ledger (user_id, kind, period, credit_micros, note, stripe_ref)
VALUES ($1, 'reversal', $2, $3, $4, $5)
ON CONFLICT (stripe_ref) DO NOTHING
RETURNING id;
