-- Per-key opt-in to the exact-match response cache: a key with it on has
-- its deterministic requests (temperature 0, not streamed) answered from the
-- cache unless the request says `Sluice-Cache: off`. The verifier reads it
-- with the principal.
ALTER TABLE api_keys ADD COLUMN cache_responses BOOLEAN NOT NULL DEFAULT false;
