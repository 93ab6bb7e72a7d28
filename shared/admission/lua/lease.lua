-- Extend a live concurrency lease by Redis's clock (never re-create one that
-- lapsed or was released).
-- KEYS[1] lease zset
-- ARGV[1] job id, ARGV[2] lease ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
if n == 1 and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return n
