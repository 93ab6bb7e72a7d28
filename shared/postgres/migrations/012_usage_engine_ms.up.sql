-- The worker's engine time per job, so the rollups' list-price cost includes
-- a model's per-GPU-second price (the ledger already charges it). Existing
-- rows predate the measurement: 0.
ALTER TABLE inference_requests ADD COLUMN engine_ms BIGINT NOT NULL DEFAULT 0 CHECK (engine_ms >= 0);
