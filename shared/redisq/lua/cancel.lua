-- Cancel a job for its owner. A queued job ends at once (the worker that
-- later pulls it only acks it); a running one is flagged and its worker told.
-- KEYS[1] job hash, KEYS[2] result stream, KEYS[3] settle stream,
-- KEYS[4] result channel (announces the append to waiters)
-- ARGV[1] owner user id ('' = any), ARGV[2] cancelled error, ARGV[3] ttl ms,
-- ARGV[4] cancel channel, ARGV[5] job id
-- Returns the status after the call, or 'notfound'.
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'notfound' end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then
  return 'notfound'
end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  return st
end
redis.call('HSET', KEYS[1], 'cancel', '1')
if st == 'queued' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'ended', now, 'error', ARGV[2], 'http', 499)
  redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', 'cancelled', 'error', ARGV[2], 'http', 499)
  redis.call('SPUBLISH', KEYS[4], KEYS[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
  settle_event(KEYS[1], KEYS[3], ARGV[5]) -- its reservation must be released
  return 'cancelled'
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'cancelling'
