-- Publish one worker's view of a model's endpoints, and drop lapsed entries.
-- KEYS[1] endpoints hash, KEYS[2] seen sorted set
-- ARGV[1] worker, ARGV[2] JSON, ARGV[3] ttl ms
-- Returns the number of live workers for the model.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, w in ipairs(gone) do redis.call('HDEL', KEYS[1], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
-- Both keys vanish if every worker stops publishing.
redis.call('PEXPIRE', KEYS[1], ttl * 4)
redis.call('PEXPIRE', KEYS[2], ttl * 4)
return redis.call('ZCARD', KEYS[2])
