-- Issue 17: the service tier a settled job was charged at (flex, priority,
-- batch: a price factor on the model's prices); NULL at the base price.
ALTER TABLE credit_ledger ADD COLUMN service_tier VARCHAR(16);
