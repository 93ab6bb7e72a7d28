-- Nothing produced goes unbilled, and credit never goes below zero unseen.
--
-- A settled job's usage past its hold is charged all the same (included
-- tokens, then overage, then credit); what no source covers is debt: the
-- prepaid balance goes below zero by it, and the row says so.
ALTER TABLE credit_ledger
    -- tokens the engine counted past the hold's bounds (0 when the bound held)
    ADD COLUMN excess_tokens BIGINT NOT NULL DEFAULT 0 CHECK (excess_tokens >= 0),
    -- micro-dollars of credit_micros no funds covered: the balance's debt
    ADD COLUMN debt_micros BIGINT NOT NULL DEFAULT 0 CHECK (debt_micros >= 0),
    -- settled without its hold (the hold had lapsed or was lost): charged
    -- from the job's recorded usage at the prices the hold was taken at
    ADD COLUMN unheld BOOLEAN NOT NULL DEFAULT false;

-- reversal: a dispute won gives back what its clawback took.
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('grant', 'usage', 'cache', 'clawback', 'reversal'));

-- Card disputes: while one is open its user's prepaid credit and postpaid
-- use are suspended (included tokens still serve).
CREATE TABLE billing_disputes (
    id             TEXT PRIMARY KEY,               -- Stripe dispute id
    user_id        UUID NOT NULL REFERENCES users(id),
    payment        TEXT NOT NULL DEFAULT '',       -- the disputed payment intent
    amount_micros  BIGINT NOT NULL DEFAULT 0,
    status         VARCHAR(30) NOT NULL,           -- Stripe's: needs_response, won, lost, ...
    open           BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    closed_at      TIMESTAMPTZ
);
CREATE INDEX billing_disputes_open ON billing_disputes (user_id) WHERE open;
