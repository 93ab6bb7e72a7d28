-- The model name a client asked for when an alias chose the version that
-- served it (model_name): A/B results group by (requested_model, model_name).
-- NULL when the client named the model itself.
ALTER TABLE inference_requests ADD COLUMN IF NOT EXISTS requested_model text;
CREATE INDEX IF NOT EXISTS inference_requests_requested_model_idx
    ON inference_requests (requested_model, model_name) WHERE requested_model IS NOT NULL;
