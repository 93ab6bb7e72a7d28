-- Complete a job: result, usage event and ack in one atomic step. A job that
-- is already final is only acked, so a redelivered job never bills twice.
-- KEYS[1] job hash, KEYS[2] job stream, KEYS[3] result stream,
-- KEYS[4] usage stream, KEYS[5] webhook stream, KEYS[6] settle stream,
-- KEYS[7] result channel (announces the append to waiters)
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] status, ARGV[4] result JSON,
-- ARGV[5] error JSON, ARGV[6] usage JSON, ARGV[7] usage event JSON (or ''),
-- ARGV[8] ttl ms, ARGV[9] http status, ARGV[10] job id,
-- ARGV[11] object-store key of the result ('' when the result is inline),
-- ARGV[12] engine milliseconds ('' or absent: none measured); kept on the job
-- for settlement's GPU-second charge, ARGV[13] jobs.sync_retention ms (a
-- synchronous job whose caller left ('gone', delivered.lua) is slimmed at
-- once: nobody will read its result), ARGV[14] '1' when the worker released
-- the job's concurrency lease before this script (Queue.Complete): the end
-- event says so ('lease'), and the caller may send its answer before its own
-- release, which is then only a fallback
-- A synchronous job (not async, no webhook) is slimmed here too (slim.lua):
-- its caller reads the result from the result stream, so the hash never
-- takes the result and is left as the delivered script used to leave it
-- after the answer (a round trip and a script fewer per request). The end
-- event says so ('slim'): the submit then only deletes the result stream. A
-- caller that never reads it (its submit died) leaves the stream to expire
-- after the ttl; GET /v1/jobs/{id} reads the result from it until then
-- (Queue.Get), as it read the hash's before.
-- Returns 1 if this call completed the job, 0 if it was already final.
local function ack()
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
end
-- One read for every field the script decides on.
local f = redis.call('HMGET', KEYS[1], 'status', 'erased', 'async', 'webhook', 'gone')
local st = f[1]
if (not st) or st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
  ack()
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[8])
-- An erased job (account deleted while it ran) keeps no result and gets no
-- result stream back; its usage is still recorded and billed.
local erased = f[2] == '1'
local hook = f[4]
local sync = not erased and f[3] ~= '1' and not (hook and hook ~= '')
local set
if erased then
  set = {'status', ARGV[3], 'ended', now, 'usage', ARGV[6], 'http', ARGV[9]}
elseif sync then
  set = {'status', ARGV[3], 'ended', now, 'error', ARGV[5], 'usage', ARGV[6]}
else
  set = {'status', ARGV[3], 'ended', now, 'result', ARGV[4], 'error', ARGV[5], 'usage', ARGV[6], 'http', ARGV[9], 'result_ref', ARGV[11]}
end
if ARGV[12] and ARGV[12] ~= '' and ARGV[12] ~= '0' then
  set[#set + 1] = 'engine_ms'
  set[#set + 1] = ARGV[12]
end
redis.call('HSET', KEYS[1], unpack(set))
if sync then
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ARGV[3], 'result', ARGV[4],
    'error', ARGV[5], 'usage', ARGV[6], 'http', ARGV[9], 'ref', ARGV[11], 'slim', '1', 'lease', ARGV[14] or '')
  redis.call('SPUBLISH', KEYS[7], KEYS[3])
elseif not erased then
  redis.call('XADD', KEYS[3], '*', 'type', 'end', 'status', ARGV[3], 'result', ARGV[4],
    'error', ARGV[5], 'usage', ARGV[6], 'http', ARGV[9], 'ref', ARGV[11], 'lease', ARGV[14] or '')
  redis.call('SPUBLISH', KEYS[7], KEYS[3])
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'ev', ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ttl) -- before settle_event: a reserved job's record waits for its settlement
settle_event(KEYS[1], KEYS[6], ARGV[10])
if hook and hook ~= '' then
  redis.call('XADD', KEYS[5], '*', 'job', ARGV[10])
end
ack()
if not erased then redis.call('PEXPIRE', KEYS[3], ttl) end
if f[5] == '1' then
  slim_job(KEYS[1], KEYS[3], tonumber(ARGV[13] or '') or ttl)
elseif sync then
  slim_job(KEYS[1], KEYS[3], tonumber(ARGV[13] or '') or ttl, true) -- the stream stays for its reader
end
return 1
