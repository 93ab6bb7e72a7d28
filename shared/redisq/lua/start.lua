-- Start a claimed job, or finish it without running when it must not run.
-- KEYS[1] job hash, KEYS[2] job stream, KEYS[3] result stream, KEYS[4] dead-letter stream,
-- KEYS[5] settle stream, KEYS[6] usage stream
-- ARGV[1] group, ARGV[2] stream entry id, ARGV[3] worker, ARGV[4] max attempts,
-- ARGV[5] ttl ms, ARGV[6] job id, ARGV[7] expired error, ARGV[8] dead error,
-- ARGV[9] interrupted error, ARGV[10] cancelled error
-- Returns {'run', attempt, field, value, ...} or {outcome}.
--
-- A reclaimed job whose last attempt reached its engine (eng_at, set by
-- engaged.lua just before each engine call, is still the attempt count) and
-- never completed (its worker died) carries that attempt's engine work: the
-- prompt bound of its hold (the engine did the prefill) and the output chunks
-- it published (eng_out, counted by chunks.lua). They add up in carried_p and
-- carried_c, once per attempt (carried_at), and are billed with the job's end:
-- by the worker that completes it (Claimed.Carried), or here when this script
-- ends it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])

local function ack()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end

-- iso formats Unix milliseconds as RFC 3339 in UTC (as Go's time.Time reads it).
local function iso(msv)
  local s = math.floor(msv / 1000)
  local z = math.floor(s / 86400) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  local sod = s % 86400
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, msv % 1000)
end

-- billCarried records the carried engine work of a job ended here as its
-- usage, with its usage event, so its settlement and usage row charge it.
local function billCarried(status)
  local v = redis.call('HMGET', KEYS[1], 'carried_p', 'carried_c', 'user', 'key', 'model', 'alias', 'created', 'started')
  local p, c = tonumber(v[1] or '0') or 0, tonumber(v[2] or '0') or 0
  if p + c == 0 then return end
  local usage = cjson.encode({prompt_tokens = p, completion_tokens = c, total_tokens = p + c, prompt_source = 'hold'})
  redis.call('HSET', KEYS[1], 'usage', usage)
  local created = tonumber(v[7] or '') or now
  local started = tonumber(v[8] or '') or now
  local ev = '{"job_id":' .. cjson.encode(ARGV[6]) .. ',"user_id":' .. cjson.encode(v[3] or '') ..
    ',"key_id":' .. cjson.encode(v[4] or '') .. ',"model":' .. cjson.encode(v[5] or '') ..
    ',"requested_model":' .. cjson.encode(v[6] or '') .. ',"status":' .. cjson.encode(status) ..
    ',"usage":' .. usage .. ',"latency_ms":' .. math.max(now - started, 0) ..
    ',"created_at":"' .. iso(created) .. '","ended_at":"' .. iso(now) .. '"}'
  redis.call('XADD', KEYS[6], '*', 'ev', ev)
end

local function finish(status, err, http)
  redis.call('HSET', KEYS[1], 'status', status, 'ended', now, 'error', err, 'http', http)
  billCarried(status)
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', status, 'error', err, 'http', http)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  settle_event(KEYS[1], KEYS[5], ARGV[6]) -- its reservation must be released
  ack()
end

local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  ack()
  return {'gone'}
end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  ack()
  return {'done'}
end
if st == 'running' then
  local v = redis.call('HMGET', KEYS[1], 'eng_at', 'attempts', 'carried_at', 'eng_out', 'hold')
  if v[1] and v[1] == v[2] and v[3] ~= v[1] then
    local p = tonumber(string.match(v[5] or '', '^(%d+)|') or '0') or 0
    redis.call('HINCRBY', KEYS[1], 'carried_p', p)
    redis.call('HINCRBY', KEYS[1], 'carried_c', tonumber(v[4] or '0') or 0)
    redis.call('HSET', KEYS[1], 'carried_at', v[1])
  end
end
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  finish('cancelled', ARGV[10], 499)
  return {'cancelled'}
end
if tonumber(redis.call('HGET', KEYS[1], 'deadline')) <= now then
  finish('expired', ARGV[7], 504)
  return {'expired'}
end
if st == 'running' and redis.call('HGET', KEYS[1], 'streamed') == '1' then
  -- A reclaimed job whose output already reached its client: running it
  -- again would show the client text twice.
  finish('failed', ARGV[9], 500)
  return {'interrupted'}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempt > tonumber(ARGV[4]) then
  redis.call('XADD', KEYS[4], '*', 'job', ARGV[6], 'error', 'too many attempts', 'at', now)
  finish('failed', ARGV[8], 500)
  return {'dead'}
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'started', now)
if redis.call('HGET', KEYS[1], 'stream') == '1' then
  -- Only a streaming waiter cares that its job started; others wait for the end.
  redis.call('XADD', KEYS[3], '*', 'type', 'start', 'attempt', attempt)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local out = {'run', attempt}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
