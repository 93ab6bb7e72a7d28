-- Claim up to ARGV[3] jobs for a worker, highest priority class first.
-- KEYS: per class p (0 first): 3p+1 job stream, 3p+2 fair queue, 3p+3
-- virtual clocks; the last key is the bell stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] count
-- Returns {bell id, stream, entry id, job id, stream, entry id, job id, ...}.
--
-- Jobs wait in the fair queue (a zset by virtual time). A claimed job is
-- moved into its class's stream and read through the consumer group in the
-- same step, so from here on the stream's pending list, heartbeats and
-- XAUTOCLAIM make it crash safe. Entries already in the stream and not yet
-- delivered (a job handed back on drain) go first.
local want = tonumber(ARGV[3])
local out = {}
local bell = redis.call('XREVRANGE', KEYS[#KEYS], '+', '-', 'COUNT', 1)
out[1] = (bell[1] and bell[1][1]) or '0-0'
local got = 0
local function read(stream)
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want - got, 'STREAMS', stream, '>')
  if not res then return end
  for _, m in ipairs(res[1][2]) do
    local job = ''
    for i = 1, #m[2], 2 do
      if m[2][i] == 'job' then job = m[2][i + 1] end
    end
    out[#out + 1] = stream
    out[#out + 1] = m[1]
    out[#out + 1] = job
    got = got + 1
  end
end
for p = 0, (#KEYS - 1) / 3 - 1 do
  if got >= want then break end
  local stream, fq, vt = KEYS[3 * p + 1], KEYS[3 * p + 2], KEYS[3 * p + 3]
  read(stream)
  if got < want then
    local popped = redis.call('ZPOPMIN', fq, want - got)
    if #popped > 0 then
      for i = 1, #popped, 2 do
        redis.call('XADD', stream, '*', 'job', popped[i])
      end
      redis.call('HSET', vt, '_g', popped[#popped])
      read(stream)
    end
  end
end
return out
