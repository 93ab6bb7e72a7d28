-- A job's settlement is done: its record, kept without expiry while the
-- settlement was pending (settle_event.lua), is dropped if its account was
-- erased, else given jobs.result_ttl from now (or the shorter 'keep' of a
-- synchronous job already delivered: slim.lua). A record that already
-- expires, or a job not ended, is left alone.
-- KEYS[1] job hash; ARGV[1] ttl ms
-- Returns 2 if dropped, 1 if its expiry was set, else 0.
local v = redis.call('HMGET', KEYS[1], 'erased', 'status', 'keep')
if v[1] == '1' then
  redis.call('UNLINK', KEYS[1])
  return 2
end
if redis.call('PTTL', KEYS[1]) ~= -1 then return 0 end
local st = v[2]
if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  local ttl = tonumber(ARGV[1])
  local keep = tonumber(v[3] or '')
  if keep and keep < ttl then ttl = keep end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
