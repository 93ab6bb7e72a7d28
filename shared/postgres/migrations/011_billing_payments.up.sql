-- The Stripe payment (payment intent) a credit grant was paid with: a refund
-- or a dispute names the charge's payment intent, and takes back at most
-- what that purchase granted.
ALTER TABLE credit_ledger ADD COLUMN stripe_payment TEXT;
CREATE INDEX credit_ledger_stripe_payment ON credit_ledger (stripe_payment) WHERE stripe_payment IS NOT NULL;
