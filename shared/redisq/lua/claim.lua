-- Claim up to ARGV[3] jobs for a worker, highest priority class first.
-- KEYS: per class p (0 first): 3p+1 job stream, 3p+2 fair queue, 3p+3
-- virtual clocks; the last key is the bell stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] count,
-- ARGV[4] the most batch-class jobs to claim while interactive jobs wait
-- (-1 or absent: no limit), ARGV[5] the batch class's place in KEYS (0
-- first; -1 or absent: none), ARGV[6] '1': hold the batch class to
-- ARGV[4] even with no interactive job waiting (interactive jobs run on
-- the worker's endpoints: keep their next arrivals a free slot)
-- Returns {bell id, stream, entry id, job id, stream, entry id, job id, ...}.
--
-- Jobs wait in the fair queue (a zset by virtual time). A claimed job is
-- moved into its class's stream and read through the consumer group in the
-- same step, so from here on the stream's pending list, heartbeats and
-- XAUTOCLAIM make it crash safe. Entries already in the stream and not yet
-- delivered (a job handed back on drain) go first.
--
-- The batch class (batch lines, flex jobs) fills only what interactive
-- work leaves: while any other class has jobs in its fair queue, it gets at
-- most ARGV[4] (the worker's batch.max_slot_share of its endpoints' slots,
-- less what batch work holds there already); with none waiting, whatever
-- is asked.
local want = tonumber(ARGV[3])
local bulkCap = tonumber(ARGV[4] or '-1')
local bulkAt = tonumber(ARGV[5] or '-1')
local capped = ARGV[6] == '1'
local classes = (#KEYS - 1) / 3
local out = {}
local bell = redis.call('XREVRANGE', KEYS[#KEYS], '+', '-', 'COUNT', 1)
out[1] = (bell[1] and bell[1][1]) or '0-0'
local got = 0
local function read(stream, most)
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', most, 'STREAMS', stream, '>')
  if not res then return 0 end
  local n = 0
  for _, m in ipairs(res[1][2]) do
    local job = ''
    for i = 1, #m[2], 2 do
      if m[2][i] == 'job' then job = m[2][i + 1] end
    end
    out[#out + 1] = stream
    out[#out + 1] = m[1]
    out[#out + 1] = job
    n = n + 1
  end
  got = got + n
  return n
end
local function interactiveWaiting()
  for q = 0, classes - 1 do
    if q ~= bulkAt and redis.call('ZCARD', KEYS[3 * q + 2]) > 0 then return true end
  end
  return false
end
for p = 0, classes - 1 do
  if got >= want then break end
  local stream, fq, vt = KEYS[3 * p + 1], KEYS[3 * p + 2], KEYS[3 * p + 3]
  local most = want - got
  if p == bulkAt and bulkCap >= 0 and (capped or interactiveWaiting()) then
    most = math.min(most, bulkCap)
  end
  if most > 0 then
    most = most - read(stream, most)
    if most > 0 then
      local popped = redis.call('ZPOPMIN', fq, most)
      if #popped > 0 then
        for i = 1, #popped, 2 do
          redis.call('XADD', stream, '*', 'job', popped[i])
        end
        redis.call('HSET', vt, '_g', popped[#popped])
        read(stream, most)
      end
    end
  end
end
return out
