-- Enqueue a job: create its hash and queue it fairly, atomically.
-- KEYS[1] job hash, KEYS[2] job stream, KEYS[3] fair queue (zset),
-- KEYS[4] virtual clocks (hash), KEYS[5] bell stream, KEYS[6] the shard's
-- placement hash (claim.lua): a job with a prefix chain (field pfx) is
-- listed there as "created|chain" while it waits
-- ARGV[1] job id, ARGV[2] result ttl ms, ARGV[3] deadline offset ms,
-- ARGV[4] max queue depth, ARGV[5] user id, ARGV[6..] job field/value pairs
-- Returns {1, created_ms} or {0, depth} when the queue is full.
--
-- Fair sharing within a priority class: each job's score is its user's
-- virtual time, max(class clock, user's last score) + 1. Users with work
-- queued take turns in score order; a user arriving behind a flood starts at
-- the class clock, not behind the flood. Within a user, order is FIFO.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR job exists')
end
local depth = redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
if depth >= tonumber(ARGV[4]) then
  return {0, depth}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = {}
local pfx -- the job's prefix chain, as the hash will hold it (the last pfx pair wins, as in HSET)
for i = 6, #ARGV do
  fields[#fields + 1] = ARGV[i]
  if ARGV[i] == 'pfx' and (i - 6) % 2 == 0 then pfx = ARGV[i + 1] end
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'created', now,
  'deadline', now + tonumber(ARGV[3]), 'attempts', 0, unpack(fields))
local vc = redis.call('HMGET', KEYS[4], '_g', ARGV[5])
local g = tonumber(vc[1]) or 0
local u = tonumber(vc[2]) or 0
local score = math.max(g, u) + 1
redis.call('HSET', KEYS[4], ARGV[5], score)
redis.call('ZADD', KEYS[3], score, ARGV[1])
if pfx then
  redis.call('HSET', KEYS[6], ARGV[1], now .. '|' .. pfx)
  redis.call('PEXPIRE', KEYS[6], tonumber(ARGV[3]) + tonumber(ARGV[2]))
end
redis.call('XADD', KEYS[5], 'MAXLEN', '1', '*', 'j', '1')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
return {1, now}
