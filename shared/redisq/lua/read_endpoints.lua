-- Read the live workers' published endpoints of a model.
-- KEYS[1] endpoints hash, KEYS[2] seen sorted set
-- Returns {now_ms, worker, expires_ms, json, worker, expires_ms, json, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  local v = redis.call('HGET', KEYS[1], live[i])
  if v then
    out[#out + 1] = live[i]
    out[#out + 1] = live[i + 1]
    out[#out + 1] = v
  end
end
return out
