-- Enqueue a job: create its hash and add it to its model's stream, atomically.
-- KEYS[1] job hash, KEYS[2] job stream
-- ARGV[1] job id, ARGV[2] result ttl ms, ARGV[3] deadline offset ms,
-- ARGV[4] max queue depth, ARGV[5..] job field/value pairs
-- Returns {1, created_ms} or {0, depth} when the queue is full.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('ERR job exists')
end
local depth = redis.call('XLEN', KEYS[2])
if depth >= tonumber(ARGV[4]) then
  return {0, depth}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'status', 'queued', 'created', now,
  'deadline', now + tonumber(ARGV[3]), 'attempts', 0, unpack(fields))
local id = redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'entry', id)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[2]))
return {1, now}
