-- Issue 17: the service tier a job ran at and was charged at (flex,
-- priority, batch: a price factor on the model's prices); NULL at the
-- default tier. On the ledger row (what was charged) and the usage row.
ALTER TABLE credit_ledger ADD COLUMN service_tier VARCHAR(16);
ALTER TABLE inference_requests ADD COLUMN service_tier VARCHAR(16);
