-- Grow a job's hold to cover its usage past the hold, before it settles:
-- the included tokens, overage and credit it takes beyond its hold are
-- taken from what the user's counters have free at this instant, atomically,
-- so no other settlement or admission can be handed the same room. The grown
-- hold is marked ('|g' appended, after a tiered hold's price term; 9-field
-- holds get '|0|0' first): its
-- settlement charges it with no further room, so a crash after growing
-- replays to the same charge, and it is never grown twice. settle.lua then
-- releases the grown hold as any other. A job settled without its hold gets
-- one created here (ARGV[2] '', from its terms ARGV[8]), marked '|u' (its
-- ledger row says unheld).
-- KEYS[1] funds hash, KEYS[2] holds hash
-- ARGV[1] job id, ARGV[2] the hold as the caller read it ('' : none),
-- ARGV[3] included tokens, ARGV[4] credit, ARGV[5] overage to add,
-- ARGV[6] the hold's period (included tokens and overage count only in it),
-- ARGV[7] '1': all or nothing (short: nothing changes), else take what is
-- free of each, ARGV[8] the hold's terms for a hold created here
-- Returns {'ok', the new hold}; {'changed', the hold now ('' : none)} when
-- the hold is not what the caller read; {'short', credit, cr_held, inc_used,
-- inc_held, ov_used, ov_held, inc_lim, ov_cap, per} when all or nothing
-- could not be had (the counters now, for the caller to split again).
local h = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if h ~= ARGV[2] then return {'changed', h} end
local v = redis.call('HMGET', KEYS[1], 'credit', 'cr_held', 'inc_used', 'inc_held', 'ov_used', 'ov_held',
  'inc_lim', 'ov_cap', 'per')
local function n(i) return tonumber(v[i] or '0') or 0 end
local samePer = v[9] == ARGV[6]
local incFree, ovFree = 0, 0
if samePer and v[7] then
  if n(7) < 0 then incFree = math.huge else incFree = math.max(n(7) - n(3) - n(4), 0) end
end
if samePer and n(8) > 0 then ovFree = math.max(n(8) - n(5) - n(6), 0) end
local crFree = math.max(n(1) - n(2), 0)
local add = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local free = {incFree, crFree, ovFree}
for i = 1, 3 do
  if add[i] > free[i] then
    if ARGV[7] == '1' then return {'short', unpack(v)} end
    add[i] = free[i]
  end
  add[i] = math.max(add[i], 0)
end
local base = h
if base == '' then base = ARGV[8] end
local f = {}
for x in string.gmatch(base, '[^|]+') do f[#f + 1] = x end
f[5] = string.format('%d', tonumber(f[5]) + add[1])
f[6] = string.format('%d', tonumber(f[6]) + add[2])
f[7] = string.format('%d', tonumber(f[7]) + add[3])
if #f == 9 then
  f[10], f[11] = '0', '0'
end
f[#f + 1] = (h == '') and 'u' or 'g' -- after a tiered hold's price term (field 12)
local grown = table.concat(f, '|')
redis.call('HSET', KEYS[2], ARGV[1], grown)
redis.call('HINCRBY', KEYS[1], 'inc_held', add[1])
redis.call('HINCRBY', KEYS[1], 'cr_held', add[2])
redis.call('HINCRBY', KEYS[1], 'ov_held', add[3])
return {'ok', grown}
