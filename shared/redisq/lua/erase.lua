-- Erase one job of a deleted account. A job still queued or running is
-- cancelled first (as cancel.lua does), so nothing more runs for it; its
-- content (prompt, result, error, webhook) goes and its result stream is
-- removed; the 'erased' flag makes the worker append nothing more
-- (chunks.lua) and complete.lua keep no result and recreate no stream, while
-- it still records the usage: what the job used is billed. The scrubbed
-- record is dropped at once when no settlement is pending, otherwise by the
-- settler once the settlement is done (settled.lua).
-- KEYS[1] job hash, KEYS[2] result stream, KEYS[3] settle stream
-- ARGV[1] user id, ARGV[2] cancelled error, ARGV[3] cancel channel, ARGV[4] job id
-- Returns 'dropped', 'kept' (awaiting settlement) or 'notfound'.
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or redis.call('HGET', KEYS[1], 'user') ~= ARGV[1] then return 'notfound' end
local final = st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired'
local resv = redis.call('HGET', KEYS[1], 'resv') == '1'
if not final then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  if st == 'queued' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('HSET', KEYS[1], 'status', 'cancelled', 'ended', now, 'error', ARGV[2], 'http', 499)
    final = true -- ended here; only a reservation to release remains
    settle_event(KEYS[1], KEYS[3], ARGV[4]) -- its reservation must be released
  else
    redis.call('PUBLISH', ARGV[3], ARGV[4])
  end
end
redis.call('HSET', KEYS[1], 'erased', '1')
redis.call('HDEL', KEYS[1], 'body', 'body_ref', 'result', 'result_ref', 'error', 'webhook', 'alias')
redis.call('UNLINK', KEYS[2])
if final and not resv then
  redis.call('UNLINK', KEYS[1])
  return 'dropped'
end
return 'kept'
