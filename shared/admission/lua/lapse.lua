-- Holds past their lapse time (the job's deadline plus admission.hold_grace).
-- A hold lapses only when its job is gone (its submit died before
-- enqueueing it): the caller checks each due job's record between the two
-- calls, because the job's keys live in another hash slot. The hold of a
-- job still recorded waits for its settlement, however late; its lapse time
-- moves on so it is checked again later, not on every admission.
-- KEYS[1] funds hash, KEYS[2] holds hash, KEYS[3] hold expiry zset, KEYS[4] lease zset
-- ARGV[1] 'due' (list up to 32 due job ids) or 'lapse'; for 'lapse':
-- ARGV[2] ms to move a live job's lapse time by, ARGV[3] n, ARGV[4..3+n]
-- job ids to lapse, the rest: live job ids.
-- Returns the due ids, or the number of holds released.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'due' then
  return redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 32)
end
local n = tonumber(ARGV[3])
local released = 0
for i = 4, #ARGV do
  local j = ARGV[i]
  local due = tonumber(redis.call('ZSCORE', KEYS[3], j) or 'inf')
  if due <= now then
    if i < 4 + n then
      local h = redis.call('HGET', KEYS[2], j)
      if h then
        local f = {}
        for v in string.gmatch(h, '[^|]+') do f[#f + 1] = v end
        redis.call('HINCRBY', KEYS[1], 'inc_held', 0 - tonumber(f[5]))
        redis.call('HINCRBY', KEYS[1], 'cr_held', 0 - tonumber(f[6]))
        redis.call('HINCRBY', KEYS[1], 'ov_held', 0 - tonumber(f[7]))
        redis.call('HDEL', KEYS[2], j)
        released = released + 1
      end
      redis.call('ZREM', KEYS[3], j)
      redis.call('ZREM', KEYS[4], j)
    else
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), j)
    end
  end
end
return released
