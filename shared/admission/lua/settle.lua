-- Settle a job's hold to what it used, once: the hold goes, the charge
-- (computed from the hold and the engine's count, the same numbers the ledger
-- row got) lands on the live counters, the token window learns the real
-- count, the lease returns. A second call finds no hold and does nothing.
-- KEYS[1] funds hash, KEYS[2] holds hash, KEYS[3] hold expiry zset,
-- KEYS[4] token amounts hash, KEYS[5] lease zset
-- ARGV[1] job id, ARGV[2] included tokens used, ARGV[3] credit spent (debt included),
-- ARGV[4] overage, ARGV[5] tokens used, ARGV[6] '1': the job is settled
-- without its hold (it lapsed or was lost; the caller wrote its ledger row
-- just now, so this runs once), ARGV[7] its period
-- Returns 1 if this call settled the job, 2 if it charged a job without a
-- hold, 0 if it was settled already.
local h = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if not h then
  if ARGV[6] ~= '1' or redis.call('HGET', KEYS[1], 'init') ~= '1' then return 0 end
  redis.call('HINCRBY', KEYS[1], 'credit', 0 - tonumber(ARGV[3]))
  if redis.call('HGET', KEYS[1], 'per') == ARGV[7] then
    redis.call('HINCRBY', KEYS[1], 'inc_used', tonumber(ARGV[2]))
    redis.call('HINCRBY', KEYS[1], 'ov_used', tonumber(ARGV[4]))
  end
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 2
end
local f = {}
for v in string.gmatch(h, '[^|]+') do f[#f + 1] = v end
-- The counters read once and written in one HSET (the same as HINCRBY, the
-- script being atomic), leaving out those that do not change; a sum past
-- 2^53 (where a double would round) still goes through HINCRBY.
local fv = redis.call('HMGET', KEYS[1], 'inc_held', 'cr_held', 'ov_held', 'credit', 'per', 'inc_used', 'ov_used')
local set = {}
local function add(i, k, d)
  d = tonumber(d)
  if d == 0 then return end
  local v = tonumber(fv[i] or '0') + d
  if math.abs(v) >= 9007199254740992 or math.abs(d) >= 9007199254740992 then
    redis.call('HINCRBY', KEYS[1], k, string.format('%d', d))
    return
  end
  set[#set + 1] = k
  set[#set + 1] = string.format('%d', v)
end
add(1, 'inc_held', 0 - tonumber(f[5]))
add(2, 'cr_held', 0 - tonumber(f[6]))
add(3, 'ov_held', 0 - tonumber(f[7]))
add(4, 'credit', 0 - tonumber(ARGV[3]))
if fv[5] == f[8] then -- else it counted in a month now over
  add(6, 'inc_used', ARGV[2])
  add(7, 'ov_used', ARGV[4])
end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
-- The token window learns the real count: the entry and the sum in one HSET.
local tw = redis.call('HMGET', KEYS[4], ARGV[1], '_sum')
if tw[1] and tw[1] ~= ARGV[5] then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[5],
    '_sum', string.format('%d', tonumber(tw[2] or '0') + tonumber(ARGV[5]) - tonumber(tw[1])))
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
