-- Prepended to the scripts that can end a job which carries engine work of
-- an attempt whose worker died (start.lua reclaims it, carried_p/carried_c):
-- the one way such an end bills that work.
-- bill_carried records it as the job's usage, with its usage event, so its
-- settlement and usage row charge it. jk: job hash, uk: usage stream, id:
-- job id, status: how the job ended, now: Unix ms.
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

local function bill_carried(jk, uk, id, status, now)
  local v = redis.call('HMGET', jk, 'carried_p', 'carried_c', 'user', 'key', 'model', 'alias', 'created', 'started')
  local p, c = tonumber(v[1] or '0') or 0, tonumber(v[2] or '0') or 0
  if p + c == 0 then return end
  local usage = cjson.encode({prompt_tokens = p, completion_tokens = c, total_tokens = p + c, prompt_source = 'hold'})
  redis.call('HSET', jk, 'usage', usage)
  local created = tonumber(v[7] or '') or now
  local started = tonumber(v[8] or '') or now
  local ev = '{"job_id":' .. cjson.encode(id) .. ',"user_id":' .. cjson.encode(v[3] or '') ..
    ',"key_id":' .. cjson.encode(v[4] or '') .. ',"model":' .. cjson.encode(v[5] or '') ..
    ',"requested_model":' .. cjson.encode(v[6] or '') .. ',"status":' .. cjson.encode(status) ..
    ',"usage":' .. usage .. ',"latency_ms":' .. math.max(now - started, 0) ..
    ',"created_at":"' .. iso(created) .. '","ended_at":"' .. iso(now) .. '"}'
  redis.call('XADD', uk, '*', 'ev', ev)
end

