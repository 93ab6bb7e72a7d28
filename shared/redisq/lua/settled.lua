-- Jobs' settlements are done: each record, kept without expiry while its
-- settlement was pending (settle_event.lua), is dropped if its account was
-- erased, else given jobs.result_ttl from now (or the shorter 'keep' of a
-- synchronous job already delivered: slim.lua). A record that already
-- expires, or a job not ended, is left alone. One call for a settled batch's
-- jobs of one hash tag (one cluster slot), not one per job.
-- KEYS job hashes (one tag); ARGV[1] ttl ms
-- Returns, per key, 2 if dropped, 1 if its expiry was set, else 0.
local out = {}
local ttl0 = tonumber(ARGV[1])
for i = 1, #KEYS do
  out[i] = 0
  local v = redis.call('HMGET', KEYS[i], 'erased', 'status', 'keep')
  if v[1] == '1' then
    redis.call('UNLINK', KEYS[i])
    out[i] = 2
  elseif redis.call('PTTL', KEYS[i]) == -1 then
    local st = v[2]
    if st == 'succeeded' or st == 'failed' or st == 'cancelled' or st == 'expired' then
      local ttl = ttl0
      local keep = tonumber(v[3] or '')
      if keep and keep < ttl then ttl = keep end
      redis.call('PEXPIRE', KEYS[i], ttl)
      out[i] = 1
    end
  end
end
return out
