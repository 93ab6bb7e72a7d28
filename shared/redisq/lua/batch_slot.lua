-- Take a batch line's slot under the user's batch limits, atomically, by
-- Redis's clock: lines in flight (batch.lines_in_flight) and lines started
-- in the rolling minute (batch.lines_per_minute). Separate from the tier's
-- interactive rpm/tpm/concurrency, and exact across driver instances.
-- KEYS[1] in-flight zset (job id by lapse time), KEYS[2] start log zset
-- (job id by start time); both of one user, one hash slot.
-- ARGV[1] job id, ARGV[2] in-flight limit, ARGV[3] per-minute limit,
-- ARGV[4] ms until an unfreed entry lapses (the line's deadline)
-- Returns 1: the slot is the line's (taken now, or already); 0: too many in
-- flight; -1: the minute's starts are spent.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local inflight, starts = KEYS[1], KEYS[2]
if redis.call('ZSCORE', inflight, ARGV[1]) then
  return 1
end
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - 60000)
if redis.call('ZCARD', inflight) >= tonumber(ARGV[2]) then
  return 0
end
if redis.call('ZCARD', starts) >= tonumber(ARGV[3]) then
  return -1
end
local lapse = now + tonumber(ARGV[4])
redis.call('ZADD', inflight, lapse, ARGV[1])
redis.call('ZADD', starts, now, ARGV[1])
if redis.call('PTTL', inflight) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', inflight, tonumber(ARGV[4]))
end
redis.call('PEXPIRE', starts, 120000)
return 1
