-- Stripe billing (subscriptions, credit purchases, invoices, webhook events)
-- and subscription periods for paying users' included tokens.

ALTER TABLE users
    -- the Stripe customer Checkout and the portal use; one per user
    ADD COLUMN stripe_customer_id TEXT UNIQUE,
    -- the paid subscription period the latest paid invoice started (NULL:
    -- none, the calendar month counts); it lasts until the next one starts
    ADD COLUMN period_start TIMESTAMPTZ,
    ADD COLUMN period_end TIMESTAMPTZ,
    -- a payment failed at this time; paid features stop after the grace
    -- period unless an invoice is paid meanwhile
    ADD COLUMN past_due_since TIMESTAMPTZ;

-- Period labels: YYYY-MM (calendar month) or p<start> (a subscription
-- period, sluice.PeriodLabel).
ALTER TABLE credit_ledger ALTER COLUMN period TYPE VARCHAR(32);

-- clawback: a refund or a dispute takes unused prepaid credit back.
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('grant', 'usage', 'cache', 'clawback'));
-- The Stripe object a grant or clawback comes from (checkout session, charge,
-- dispute): at most one ledger row each, so a webhook delivered twice pays once.
ALTER TABLE credit_ledger ADD COLUMN stripe_ref TEXT UNIQUE;

-- One row per Stripe subscription, as the newest event applied says.
CREATE TABLE subscriptions (
    id                   TEXT PRIMARY KEY,            -- Stripe subscription id
    user_id              UUID NOT NULL REFERENCES users(id),
    tier                 VARCHAR(50) NOT NULL,
    status               VARCHAR(30) NOT NULL,        -- Stripe's: active, past_due, canceled, ...
    current_period_start TIMESTAMPTZ,
    current_period_end   TIMESTAMPTZ,
    cancel_at_period_end BOOLEAN NOT NULL DEFAULT false,
    -- the Stripe event time of the state stored: an older event arriving
    -- late (delivery is unordered) changes nothing
    event_created        TIMESTAMPTZ NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX subscriptions_user ON subscriptions (user_id);

-- Stripe invoices (subscription fees and metered overage), for statements.
CREATE TABLE billing_invoices (
    id                 TEXT PRIMARY KEY,              -- Stripe invoice id
    user_id            UUID NOT NULL REFERENCES users(id),
    subscription_id    TEXT,
    status             VARCHAR(30) NOT NULL,          -- paid, open, uncollectible, ...
    period_start       TIMESTAMPTZ,
    period_end         TIMESTAMPTZ,
    amount_due_micros  BIGINT NOT NULL DEFAULT 0,
    amount_paid_micros BIGINT NOT NULL DEFAULT 0,
    currency           VARCHAR(3) NOT NULL DEFAULT 'usd',
    hosted_invoice_url TEXT,
    event_created      TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX billing_invoices_user ON billing_invoices (user_id, period_start);

-- Webhook events applied: the id is recorded in the same transaction as the
-- event's effects, so a duplicate delivery is a no-op and a failed one is
-- never marked done.
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    created      TIMESTAMPTZ NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
