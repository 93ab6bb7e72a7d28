-- A synchronous job's caller is done with it: it was answered (ARGV[2] '0')
-- or it left (ARGV[2] '1', after its cancel). An ended job is slimmed now
-- (slim.lua); one still running is marked 'gone', so the script that ends it
-- slims it then (complete.lua, start.lua). Async jobs are left alone: their
-- result is read later, for jobs.result_ttl.
-- KEYS[1] job hash, KEYS[2] result stream; ARGV[1] jobs.sync_retention ms,
-- ARGV[2] '1' when the caller left without the answer.
-- Returns 1 if slimmed, 0 otherwise.
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or redis.call('HGET', KEYS[1], 'async') == '1' then return 0 end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  slim_job(KEYS[1], KEYS[2], tonumber(ARGV[1]))
  return 1
end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'gone', '1') end
return 0
