-- Put off a webhook delivery (or finish one) without holding a delivery slot:
-- a failed attempt waits its backoff in the due set, not in a sleeping
-- goroutine, and a delivery whose user has spent their budget waits its turn,
-- so one user's dead host delays only that user's webhooks.
-- KEYS[1] job hash, KEYS[2] hooks stream, KEYS[3] due zset, KEYS[4] the user's delivery-time counter
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] job id, ARGV[4] delay ms (< 0: the delivery is over,
-- nothing is put off), ARGV[5] delivery time spent ms, ARGV[6] budget window ms,
-- ARGV[7] '1' when an attempt was made (it counts toward webhooks.max_attempts)
-- Returns the attempts made so far.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spent = tonumber(ARGV[5])
if spent > 0 then
  redis.call('INCRBY', KEYS[4], spent)
  if redis.call('PTTL', KEYS[4]) < 0 then
    redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[6]))
  end
end
local exists = redis.call('EXISTS', KEYS[1]) == 1 -- an expired job is not brought back
local tries = tonumber(redis.call('HGET', KEYS[1], 'hook_tries') or '0')
if ARGV[7] == '1' and exists then
  tries = redis.call('HINCRBY', KEYS[1], 'hook_tries', 1)
end
local delay = tonumber(ARGV[4])
if delay >= 0 and exists then
  -- The receiver dedupes on the first entry's id: every retry carries it.
  redis.call('HSETNX', KEYS[1], 'hook_id', ARGV[2])
  redis.call('ZADD', KEYS[3], now + delay, ARGV[3])
end
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return tries
