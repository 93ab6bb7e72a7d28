-- Prepended to the scripts that end a synchronous job's delivery
-- (delivered.lua, and complete.lua and start.lua for a job whose caller
-- left): slim_job keeps only what GET /v1/jobs/{id} and settlement still
-- read, for jobs.sync_retention. The caller has the answer (or is gone), so
-- the body, the result and the result stream would only hold memory for
-- jobs.result_ttl. The hash is rewritten rather than HDEL'd: a hash that
-- once held a value over hash-max-listpack-value (the body) stays in the
-- larger hashtable encoding, and the rewritten one, small values only, is
-- a listpack. The worker, attempts and http status go too (the caller has
-- the answer; GET /v1/jobs/{id} shows none of them). Fields not named here
-- are kept (they may matter to someone); empty ones are dropped (every reader takes missing for empty). The usage
-- JSON is kept as 'u' with short keys (usageShort in delivered.go reads it
-- back): with its long key names it passes 64 bytes at four-digit counts.
-- The expiry: a reserved job awaiting settlement has none (settle_event.lua)
-- and keeps none, and settled.lua then gives it the 'keep' recorded here;
-- any other record expires within keep.
-- A record slimmed twice (complete.lua slimmed it, then its caller left
-- before reading the stream) keeps its 'u'.
-- jk: job hash, rk: result stream, keep: jobs.sync_retention in ms,
-- keepStream: true leaves rk alone (complete.lua's synchronous job, whose
-- caller reads the result from it).
local function slim_job(jk, rk, keep, keepStream)
  local drop = {body = 1, body_ref = 1, result = 1, result_ref = 1, trace = 1, skey = 1, alias = 1,
    webhook = 1, stream = 1, prio = 1, async = 1, deadline = 1, id = 1, key = 1, started = 1,
    streamed = 1, cancel = 1, gone = 1, keep = 1, worker = 1, attempts = 1, http = 1, resp = 1}
  if not keepStream then redis.call('DEL', rk) end
  local pttl = redis.call('PTTL', jk)
  if pttl == -2 then return end
  local all = redis.call('HGETALL', jk)
  local resv, status
  for i = 1, #all, 2 do
    if all[i] == 'resv' then resv = all[i + 1] elseif all[i] == 'status' then status = all[i + 1] end
  end
  -- Only a record awaiting its settlement needs to remember its expiry.
  local waits = pttl == -1 and resv == '1'
  local kept = {}
  if waits then kept = {'keep', keep} end
  -- A cancelled job's error is always the same (Get restores it), and at
  -- over 64 bytes it alone would keep the hash in the larger encoding.
  local cancelled = status == 'cancelled'
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if not drop[f] and v ~= '' and not (cancelled and f == 'error') then
      if f == 'usage' then
        f = 'u'
        v = v:gsub('"prompt_tokens":', '"p":'):gsub('"completion_tokens":', '"c":'):gsub('"total_tokens":', '"t":')
          :gsub('"cached_tokens":', '"ct":'):gsub('"prompt_source":', '"ps":')
      end
      kept[#kept + 1] = f
      kept[#kept + 1] = v
    end
  end
  redis.call('DEL', jk)
  redis.call('HSET', jk, unpack(kept))
  if pttl >= 0 then
    redis.call('PEXPIRE', jk, math.min(pttl, keep))
  elseif not waits then
    redis.call('PEXPIRE', jk, keep)
  end
end
