-- name: PutResponse
-- Keeps a response. Keyed by the response id: a job run again after a
-- crash (its first run stored, then died before completing) overwrites the
-- row with the run that completes, never adds a second.
INSERT INTO stored_responses (id, user_id, model, input, response, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET input = EXCLUDED.input, response = EXCLUDED.response,
    model = EXCLUDED.model, expires_at = EXCLUDED.expires_at
WHERE stored_responses.user_id = EXCLUDED.user_id;

-- name: GetResponse
-- The owner's response, unless it has expired.
SELECT id, user_id, model, input, response, created_at, expires_at
FROM stored_responses
WHERE id = $1 AND user_id = $2 AND expires_at > NOW();

-- name: DeleteResponse
DELETE FROM stored_responses
WHERE id = $1 AND user_id = $2 AND expires_at > NOW();

-- name: SweepResponses
-- Deletes up to $1 expired responses (a bounded batch: the run loops).
DELETE FROM stored_responses
WHERE id IN (SELECT id FROM stored_responses WHERE expires_at <= NOW() LIMIT $1);

-- name: DeleteUserResponses
DELETE FROM stored_responses WHERE user_id = $1;
