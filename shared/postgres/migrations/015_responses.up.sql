-- Stored responses of the Responses API (POST /v1/responses with store, the
-- default): Sluice keeps them itself, per user, so GET /v1/responses/{id}
-- and previous_response_id work whatever engine replica served them. The id
-- is the response id (resp_ and the job id's own part): the worker's insert
-- is keyed by it, so a job run twice (reclaimed after a crash) is stored
-- once. input is the whole input the engine got (history expanded); a later
-- previous_response_id expands to input and then response->'output'.
-- Rows past expires_at are never read and are deleted by the usage-rollup's
-- scheduled run.
CREATE TABLE stored_responses (
    id          TEXT PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    input       JSONB NOT NULL,
    response    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at);
CREATE INDEX stored_responses_user_id ON stored_responses (user_id);
