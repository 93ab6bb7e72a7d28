-- The operator's business figures (active users, calls per user, revenue per
-- day) read recent usage across all users; without this index each refresh
-- scans the whole table.
CREATE INDEX IF NOT EXISTS inference_requests_time ON inference_requests (timestamp);
