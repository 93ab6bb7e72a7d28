-- Move webhook deliveries whose wait is over back into the hooks stream, where
-- any worker's consumer group reads them (and a dead worker's are reclaimed).
-- KEYS[1] due zset, KEYS[2] hooks stream
-- ARGV[1] most to move
-- Returns how many were moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'job', id)
end
return #ids
