-- Admit one request for one user, atomically, by Redis's clock: requests and
-- tokens per rolling minute, a concurrency lease, and the worst-case funds
-- hold (included tokens, then prepaid credit, then postpaid overage).
-- KEYS[1] funds hash, KEYS[2] holds hash, KEYS[3] hold expiry zset,
-- KEYS[4] request log zset, KEYS[5] token log zset, KEYS[6] token amounts hash,
-- KEYS[7] lease zset
-- ARGV[1] job id, ARGV[2] requests/min (-1 none), ARGV[3] tokens/min (-1 none),
-- ARGV[4] concurrency (-1 none), ARGV[5] prompt bound P, ARGV[6] max completion M,
-- ARGV[7] input price, ARGV[8] output price (micro-dollars per token),
-- ARGV[9] included tokens per month (-1 unlimited), ARGV[10] overage cap (0 none),
-- ARGV[11] lease ms, ARGV[12] hold ms, ARGV[13] model, ARGV[14] window ms,
-- ARGV[15] the user's period label ('' : the calendar month of now),
-- ARGV[16] per-request price, ARGV[17] price per GPU-second (micro-dollars),
-- ARGV[18] the worst case of both (per-request plus the GPU-second price for
-- the job's whole time limit): money, never covered by included tokens,
-- ARGV[19] the service tier's price term '<tier>:<ppm>' ('' : the base
-- price): the money held is ceil(money x ppm / 1e6)
-- Returns {outcome, detail, retry ms, rpm limit, rpm left, rpm reset ms,
--          tpm limit, tpm left, tpm reset ms, holds due to lapse (0|1)};
--          outcome ok|limit|quota|load.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local job = ARGV[1]
local rpm, tpm, conc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local P, M = tonumber(ARGV[5]), tonumber(ARGV[6])
local pin, pout = tonumber(ARGV[7]), tonumber(ARGV[8])
local incLimit, ovCap = tonumber(ARGV[9]), tonumber(ARGV[10])
local window = tonumber(ARGV[14])
local T = P + M

-- The calendar month (UTC) of now, from days since the epoch.
local function period(ms)
  local z = math.floor(ms / 86400000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d', y, m)
end
-- A paying user's period is the subscription period (the caller knows it);
-- everyone else's is the calendar month.
local per = ARGV[15]
if per == nil or per == '' then per = period(now) end

-- The funds fields this script reads, in one HMGET (nothing in it changes
-- them before it writes them back at the end, so one read is exact).
local fv = redis.call('HMGET', KEYS[1], 'init', 'per', 'inc_used', 'inc_held', 'susp', 'credit', 'cr_held',
  'ov_used', 'ov_held', 'inc_lim', 'ov_cap')
-- Not loaded, or another period than the counters hold (a new month, a new
-- subscription period, or a cache elsewhere still on the old one): the
-- caller loads that period's sums from the ledger, so switching back and
-- forth never hands out a fresh allowance.
if fv[1] ~= '1' or fv[2] ~= per then
  return {'load', per, 0, 0, 0, 0, 0, 0, 0}
end
local fi = {inc_used = 3, inc_held = 4, credit = 6, cr_held = 7, ov_used = 8, ov_held = 9}
local function num(k) return tonumber(fv[fi[k]] or '0') end

-- Holds whose jobs never settled lapse in lapse.lua, which the caller runs
-- once it has checked that their jobs are gone (a live job's hold never lapses).

-- Rolling-minute windows. The token sum of the window (_sum) is read once
-- and written once at the end (reply), with what left the window taken off
-- and, when admitted, this request's tokens added.
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - window)
local toks, sumDirty = 0, false
if #old > 0 then
  -- Their amounts and the sum in one HMGET, their entries gone in one HDEL
  -- (in slices: unpack has a bounded stack).
  local gone = 0
  for i = 1, #old, 4000 do
    local ids = {unpack(old, i, math.min(i + 3999, #old))}
    local amt = redis.call('HMGET', KEYS[6], unpack(ids))
    for k = 1, #ids do gone = gone + tonumber(amt[k] or '0') end
    redis.call('HDEL', KEYS[6], unpack(ids))
  end
  toks = tonumber(redis.call('HGET', KEYS[6], '_sum') or '0') - gone
  sumDirty = gone ~= 0
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
else
  toks = tonumber(redis.call('HGET', KEYS[6], '_sum') or '0')
end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)

local reqs = redis.call('ZCARD', KEYS[4])
-- When the oldest entry leaves the window.
local function resetOf(key)
  local o = redis.call('ZRANGE', KEYS[key], 0, 0, 'WITHSCORES')
  if #o == 0 then return 0 end
  return math.max(tonumber(o[2]) + window - now, 0)
end
local function reply(outcome, detail, retry, admitted)
  if sumDirty then -- not yet written with the request's tokens (admitted, tpm >= 0)
    redis.call('HSET', KEYS[6], '_sum', string.format('%d', toks))
  end
  local a = admitted and 1 or 0
  local rl, rr, tl, tr = rpm, -1, tpm, -1
  if rpm >= 0 then rr = math.max(rpm - reqs - a, 0) end
  if tpm >= 0 then tr = math.max(tpm - toks - (admitted and T or 0), 0) end
  local due = #redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1)
  return {outcome, detail, retry, rl, rr, resetOf(4), tl, tr, resetOf(5), due}
end

if rpm >= 0 and reqs >= rpm then
  return reply('limit', 'requests', resetOf(4), false)
end
if tpm >= 0 and toks + T > tpm then
  if T > tpm then
    return reply('limit', 'tokens_max', 0, false)
  end
  -- Wait until enough of the window's tokens have left it.
  local es = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
  local left, retry = toks, window
  for i = 1, #es, 2 do
    left = left - tonumber(redis.call('HGET', KEYS[6], es[i]) or '0')
    if left + T <= tpm then
      retry = math.max(tonumber(es[i + 1]) + window - now, 0)
      break
    end
  end
  return reply('limit', 'tokens', retry, false)
end
if conc >= 0 and redis.call('ZCARD', KEYS[7]) >= conc then
  local o = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
  return reply('limit', 'concurrency', math.max(tonumber(o[2]) - now, 1000), false)
end

-- Funds: the worst case, paid in order.
local inc = T
if incLimit >= 0 then
  inc = math.min(T, math.max(incLimit - num('inc_used') - num('inc_held'), 0))
end
local inRest = math.max(P - inc, 0)
local outRest = T - inc - inRest
local money = inRest * pin + outRest * pout + tonumber(ARGV[18] or '0')
local term = ARGV[19] or ''
if term ~= '' then
  -- ceil(money x ppm / 1e6), exact in doubles: split money at 1e6 so no
  -- product passes 2^53 (admission.ApplyFactor is the same in Go).
  local ppm = tonumber(string.match(term, ':(%d+)$'))
  local q, r = math.floor(money / 1000000), money % 1000000
  money = q * ppm + math.floor((r * ppm + 999999) / 1000000)
end
-- An open card dispute suspends prepaid credit and postpaid use ('susp').
local susp = fv[5] == '1'
local cr = math.min(money, math.max(num('credit') - num('cr_held'), 0))
if susp then cr = 0 end
local ov = money - cr
if ov > 0 and (susp or ovCap <= 0 or num('ov_used') + num('ov_held') + ov > ovCap) then
  return reply('quota', susp and 'suspended' or (ovCap > 0 and 'cap' or 'funds'), 0, false)
end

-- An unlimited dimension keeps no log.
if rpm >= 0 then
  redis.call('ZADD', KEYS[4], now, job)
  redis.call('PEXPIRE', KEYS[4], window * 2)
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[5], now, job)
  redis.call('HSET', KEYS[6], job, T, '_sum', string.format('%d', toks + T))
  sumDirty = false
  redis.call('PEXPIRE', KEYS[5], window * 2)
  redis.call('PEXPIRE', KEYS[6], window * 2)
end
redis.call('ZADD', KEYS[7], now + tonumber(ARGV[11]), job)
if redis.call('PTTL', KEYS[7]) < tonumber(ARGV[11]) then -- never shorten another lease's life
  redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[11]))
end
-- P|M|pin|pout|inc|cr|ov|period|model[|preq|psec] (settle.lua and the lapse
-- above read fields 5 to 8 only, so older scripts read this hold too). A
-- model priced by tokens alone gets the 9-field hold of before, byte for
-- byte, so a settler not yet upgraded reads its model name right.
local preq, psec = tonumber(ARGV[16] or '0'), tonumber(ARGV[17] or '0')
local hold = string.format('%d|%d|%d|%d|%d|%d|%d|%s|%s', P, M, pin, pout, inc, cr, ov, per, ARGV[13])
if preq > 0 or psec > 0 or term ~= '' then
  hold = hold .. string.format('|%d|%d', preq, psec)
end
-- A tiered hold's twelfth field is its price term (a grown one's mark
-- comes after it: grow.lua).
if term ~= '' then hold = hold .. '|' .. term end
redis.call('HSET', KEYS[2], job, hold)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[12]), job)
-- The held sums grow by this hold, and the user's limits are recorded as of
-- now (settlement charges usage past a hold to what they leave free): one
-- HSET of the values read above plus the hold (the same as HINCRBY, the
-- script being atomic), leaving out what does not change; a sum past 2^53
-- (where a double would round) still goes through HINCRBY.
local set = {}
local function put(k, v) set[#set + 1] = k; set[#set + 1] = v end
local function add(k, d)
  if d == 0 then return end
  local v = num(k) + d
  if math.abs(v) >= 9007199254740992 then
    redis.call('HINCRBY', KEYS[1], k, d)
  else
    put(k, string.format('%d', v))
  end
end
add('inc_held', inc)
add('cr_held', cr)
add('ov_held', ov)
if tonumber(fv[10] or '') ~= incLimit then put('inc_lim', incLimit) end
if tonumber(fv[11] or '') ~= ovCap then put('ov_cap', ovCap) end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
return reply('ok', per, 0, true)
