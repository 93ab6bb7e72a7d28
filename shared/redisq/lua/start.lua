-- Start a claimed job, or finish it without running when it must not run.
-- KEYS[1] job hash, KEYS[2] job stream, KEYS[3] result stream, KEYS[4] dead-letter stream,
-- KEYS[5] settle stream, KEYS[6] result channel (announces appends to waiters)
-- ARGV[1] group, ARGV[2] stream entry id, ARGV[3] worker, ARGV[4] max attempts,
-- ARGV[5] ttl ms, ARGV[6] job id, ARGV[7] expired error, ARGV[8] dead error,
-- ARGV[9] interrupted error, ARGV[10] cancelled error, ARGV[11] jobs.sync_retention ms
-- (a synchronous job whose caller left, 'gone', is slimmed as it ends: slim.lua)
-- Returns {'run' or 'interrupted', attempt, field, value, ...} or {outcome}:
-- the job hash as it was read, then the fields this script wrote (the
-- reader keeps the last of a repeated field).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[5])

local function ack()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end

local function finish(status, err, http)
  redis.call('HSET', KEYS[1], 'status', status, 'ended', now, 'error', err, 'http', http)
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', status, 'error', err, 'http', http)
  redis.call('SPUBLISH', KEYS[6], KEYS[3])
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
  settle_event(KEYS[1], KEYS[5], ARGV[6]) -- its reservation must be released
  ack()
  if redis.call('HGET', KEYS[1], 'gone') == '1' then
    slim_job(KEYS[1], KEYS[3], tonumber(ARGV[11] or '') or ttl)
  end
end

-- One HGETALL answers every check below and is the reply.
local all = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #all, 2 do f[all[i]] = all[i + 1] end
local st = f['status']
if not st then
  ack()
  return {'gone'}
end
if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  ack()
  return {'done'}
end
if st == 'running' and f['streamed'] == '1' then
  -- A reclaimed job whose output already reached its client (whether or
  -- not it was cancelled or expired since): running it again would show
  -- the client text twice, so it does not run, but what the lost worker's
  -- engine call produced was shown and is paid. The job stays running,
  -- its entry pending for this worker, which prices the prompt and the
  -- chunks in the result stream and completes it (a crash meanwhile: the
  -- next reclaim lands here again).
  redis.call('HSET', KEYS[1], 'worker', ARGV[3])
  local out = {'interrupted', tonumber(f['attempts']) or 0}
  for i = 1, #all do out[#out + 1] = all[i] end
  out[#out + 1] = 'worker'
  out[#out + 1] = ARGV[3]
  return out
end
if f['cancel'] == '1' then
  finish('cancelled', ARGV[10], 499)
  return {'cancelled'}
end
if tonumber(f['deadline']) <= now then
  finish('expired', ARGV[7], 504)
  return {'expired'}
end
local attempt = (tonumber(f['attempts']) or 0) + 1
if attempt > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'attempts', attempt)
  redis.call('XADD', KEYS[4], '*', 'job', ARGV[6], 'error', 'too many attempts', 'at', now)
  finish('failed', ARGV[8], 500)
  return {'dead'}
end
local wrote = {'status', 'running', 'worker', ARGV[3], 'started', string.format('%d', now),
  'attempts', string.format('%d', attempt)}
redis.call('HSET', KEYS[1], unpack(wrote))
if f['stream'] == '1' then
  -- Only a streaming waiter cares that its job started; others wait for the end.
  redis.call('XADD', KEYS[3], '*', 'type', 'start', 'attempt', attempt)
  redis.call('SPUBLISH', KEYS[6], KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ttl)
end
local out = {'run', attempt}
for i = 1, #all do out[#out + 1] = all[i] end
for i = 1, #wrote do out[#out + 1] = wrote[i] end
return out
