-- Spend one of a running job's attempts: its upstream call failed in a way
-- that is the request's own (a reset, a 5xx), so trying again must count
-- toward jobs.max_attempts, or a request that always fails would run forever.
-- KEYS[1] job hash
-- ARGV[1] worker that runs the job
-- Returns the attempts spent so far, or -1 when the job is no longer this
-- worker's running job (reclaimed, cancelled, final): the caller stops.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then
  return -1
end
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
