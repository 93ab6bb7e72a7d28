-- Mark a running job's current attempt as having reached its engine, just
-- before the worker sends it: if the worker dies before completing the job,
-- the worker that reclaims it bills this attempt's prompt and published
-- output (start.lua). eng_out restarts at 0: chunks.lua counts the output.
-- KEYS[1] job hash
-- ARGV[1] worker that runs the job
-- Returns 1, or 0 when the job is no longer this worker's running job.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'eng_at', redis.call('HGET', KEYS[1], 'attempts'), 'eng_out', 0)
return 1
