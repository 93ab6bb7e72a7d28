-- Claim up to ARGV[3] jobs for a worker, highest priority class first.
-- KEYS: per class p (0 first): 3p+1 job stream, 3p+2 fair queue, 3p+3
-- virtual clocks; the last key is the bell stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] count,
-- ARGV[4] the most batch-class jobs to claim while interactive jobs wait
-- (-1 or absent: no limit), ARGV[5] the batch class's place in KEYS (0
-- first; -1 or absent: none), ARGV[6] '1': hold the batch class to
-- ARGV[4] even with no interactive job waiting (interactive jobs run on
-- the worker's endpoints: keep their next arrivals a free slot)
-- The key after the bell is the placement hash (job id → "created|chain"
-- of the queued jobs that carry a prefix chain, written by enqueue.lua):
-- a claimed job's field is removed.
-- ARGV[7] '1': prefix-aware placement (below), with ARGV[8] unused (kept empty), ARGV[9] spill-after ms,
-- ARGV[10] entry ttl ms, ARGV[11] most entries, ARGV[12] scan window,
-- ARGV[13..] the claiming worker's endpoint ids and free slots, in pairs;
-- KEYS then end with the bell, the placement hash, the affinity hash, its
-- LRU zset and the hash of every worker's endpoints' free slots as last
-- claimed.
-- Returns {bell id, state, stream, entry id, job id, endpoint id, ...}:
-- four fields a job; the endpoint id is '' where the script placed none.
-- state says what is left for the worker's next claim: 'drained' when it
-- took fewer jobs than asked because every class was empty (nothing queued,
-- nothing handed back, no class held to a cap: the worker may sleep on the
-- bell at once), 'held' when it took fewer than asked and jobs carrying a
-- prefix chain are queued (others' until they wait spill-after), else ''.
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
--
-- Prefix-aware placement (docs/ARCHITECTURE.md, "Prefix-aware
-- placement"). A job may carry the block-hash chain of its prompt prefix
-- (field pfx). The affinity hash maps each block hash to the endpoint that
-- last ran a job with that prefix. Instead of popping the fair queue's
-- head, the claim looks at its first ARGV[12] jobs in fair order and takes
-- those this worker should run: no chain (the worker picks), or no
-- endpoint known for it and this worker's freest endpoint at least as free
-- as any other worker's last reported (placed there: new prefixes spread
-- evenly over all workers' engines), or the
-- longest-matching entry names one of this worker's endpoints with a free
-- slot (placed there), or the job has waited ARGV[9] ms (spilled to this
-- worker's freest endpoint: a hot prefix spreads, a job never starves
-- behind a full or dead endpoint). Others stay queued, in order, for the
-- worker that holds their prefix. Among the jobs taken, the order is the
-- fair queue's, so user turns and priority classes hold as before.
local want = tonumber(ARGV[3])
local bulkCap = tonumber(ARGV[4] or '-1')
local bulkAt = tonumber(ARGV[5] or '-1')
local capped = ARGV[6] == '1'
local place = ARGV[7] == '1'
local extra = 1
if place then extra = 4 end
local classes = (#KEYS - 1 - extra) / 3
local bellKey = KEYS[3 * classes + 1]
local pfxq = KEYS[3 * classes + 2]
local aff, lru, eps = KEYS[3 * classes + 3], KEYS[3 * classes + 4], KEYS[3 * classes + 5]
local out = {}
local bell = redis.call('XREVRANGE', bellKey, '+', '-', 'COUNT', 1)
out[1] = (bell[1] and bell[1][1]) or '0-0'
local got = 0
local placed = {}

local now, spill, ttl, most_entries, window
local free, mine = {}, {}
local others -- the most free slots another worker reported on one endpoint (read by ready)
local remembered = false -- the affinity hash and its LRU were written: their ttl is renewed
if place then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  spill, ttl = tonumber(ARGV[9]), tonumber(ARGV[10])
  most_entries, window = tonumber(ARGV[11]), tonumber(ARGV[12])
  for i = 13, #ARGV - 1, 2 do
    mine[#mine + 1] = ARGV[i]
    free[ARGV[i]] = tonumber(ARGV[i + 1])
  end
end

-- ready reads, once per claim and only when a queued job carries a chain
-- (a claim that finds none, the common empty one, skips both): the other
-- workers' endpoints, and drops the affinity entries unused for ttl. A
-- drop put off to a later claim drops the same entries and more, before
-- any of them is looked up.
local function ready()
  if others then return end
  others = 0
  -- Other workers' endpoints, as their last claims left them; a report
  -- older than ten spill bounds (a full or gone worker claims no more) counts
  -- as none.
  local rep = redis.call('HGETALL', eps)
  for i = 1, #rep, 2 do
    if not free[rep[i]] then
      local f, at = string.match(rep[i + 1], '^(-?%d+)|(%d+)$')
      if f and now - tonumber(at) < 10 * spill and tonumber(f) > others then others = tonumber(f) end
    end
  end
  -- Drop entries unused for ttl (a bounded batch per claim).
  local old = redis.call('ZRANGEBYSCORE', lru, '-inf', now - ttl, 'LIMIT', 0, 256)
  if #old > 0 then
    redis.call('ZREM', lru, unpack(old))
    redis.call('HDEL', aff, unpack(old))
  end
end

-- freest is this worker's endpoint with the most free slots left.
local function freest()
  local best, bf = nil, 0
  for _, e in ipairs(mine) do
    if free[e] > bf then best, bf = e, free[e] end
  end
  return best
end

-- remember maps a job's chain to endpoint e and marks its use.
local function remember(chain, e)
  local kv, sm = {}, {}
  for _, h in ipairs(chain) do
    kv[#kv + 1] = h
    kv[#kv + 1] = e
    sm[#sm + 1] = now
    sm[#sm + 1] = h
  end
  if #kv > 0 then
    redis.call('HSET', aff, unpack(kv))
    redis.call('ZADD', lru, unpack(sm))
    remembered = true
  end
  local over = redis.call('ZCARD', lru) - most_entries
  if over > 0 then
    local gone = redis.call('ZPOPMIN', lru, over)
    for i = 1, #gone, 2 do redis.call('HDEL', aff, gone[i]) end
  end
end

-- choose decides whether this worker takes a job now, and where, from its
-- placement field ("created|chain", false when it has none): it returns
-- the endpoint id ('' for no chain: the worker picks), or nil to leave the
-- job for the worker that holds its prefix.
local function choose(field)
  if not field then return '' end
  local created, pfx = string.match(field, '^(%d+)|(.*)$')
  if not pfx or pfx == '' then return '' end
  local chain = {}
  for h in string.gmatch(pfx, '[^,]+') do chain[#chain + 1] = h end
  ready()
  local owner, depth = nil, 0
  local known = {}
  if #chain > 0 then known = redis.call('HMGET', aff, unpack(chain)) end
  for i = #chain, 1, -1 do
    if known[i] then owner, depth = known[i], i break end
  end
  local waited = now - tonumber(created) >= spill
  local e
  if owner and free[owner] and free[owner] > 0 then
    e = owner
  elseif not owner then
    e = freest()
    if e and free[e] < others and not waited then e = nil end -- a freer engine elsewhere
  elseif waited then
    e = freest()
    -- A spill leaves the prefix where it is, unless its endpoint has not
    -- run it for ten spill bounds (gone, or out of rotation): then it moves.
    local last = tonumber(redis.call('ZSCORE', lru, chain[depth]) or '0')
    if e and now - last < 10 * spill then
      free[e] = free[e] - 1
      return e
    end
  end
  if not e then return nil end
  free[e] = free[e] - 1
  remember(chain, e)
  return e
end

-- report records this worker's endpoints' free slots for the others.
local function report()
  if not place or #mine == 0 then return end
  local kv = {}
  for _, e in ipairs(mine) do
    kv[#kv + 1] = e
    kv[#kv + 1] = free[e] .. '|' .. now
  end
  redis.call('HSET', eps, unpack(kv))
  redis.call('PEXPIRE', eps, ttl)
end

-- empty[q] is true where class q's fair queue is known to be empty, false
-- where it is known not to be; nil: not known (ZCARD asks). Nothing in this
-- script adds to a fair queue, so once empty it stays so. An empty zset is
-- no key: an EXISTS of each class's fair queue counts the queues with
-- jobs (queued), and each pop that finds jobs counts one off, so once the
-- count is spent the classes not yet looked at are known empty without a
-- ZRANGE or ZPOPMIN each (the common claims: nothing queued, or one class's).
local empty, looked = {}, {}
local queued
queued = 0
for q = 0, classes - 1 do queued = queued + redis.call('EXISTS', KEYS[3 * q + 2]) end
local function isEmpty(q)
  if empty[q] == nil then
    if not looked[q] and queued == 0 then
      empty[q] = true
    else
      empty[q] = redis.call('ZCARD', KEYS[3 * q + 2]) == 0
    end
  end
  return empty[q]
end

-- pop moves up to n queued jobs of class q's fair queue into its stream,
-- in fair order; with placement, only those choose lets this worker take.
local function pop(q, n)
  if empty[q] or (not looked[q] and queued == 0) then
    empty[q] = true
    return 0
  end
  looked[q] = true
  local stream, fq, vt = KEYS[3 * q + 1], KEYS[3 * q + 2], KEYS[3 * q + 3]
  if not place then
    local popped = redis.call('ZPOPMIN', fq, n)
    if #popped > 0 then queued = queued - 1 end
    if #popped < 2 * n then empty[q] = true else empty[q] = nil end
    if #popped == 0 then return 0 end
    local ids = {}
    for i = 1, #popped, 2 do
      redis.call('XADD', stream, '*', 'job', popped[i])
      ids[#ids + 1] = popped[i]
    end
    redis.call('HDEL', pfxq, unpack(ids))
    redis.call('HSET', vt, '_g', popped[#popped])
    return #popped / 2
  end
  local head = redis.call('ZRANGE', fq, 0, window - 1, 'WITHSCORES')
  if #head == 0 then
    empty[q] = true
    return 0
  end
  queued = queued - 1
  local ids = {}
  for i = 1, #head, 2 do ids[#ids + 1] = head[i] end
  local fields = redis.call('HMGET', pfxq, unpack(ids))
  local taken, top = 0, nil
  local took = {}
  for i = 1, #head, 2 do
    if taken >= n then break end
    local e = choose(fields[(i + 1) / 2])
    if e then
      redis.call('XADD', stream, '*', 'job', head[i])
      took[#took + 1] = head[i]
      placed[head[i]] = e
      taken = taken + 1
      top = head[i + 1]
    end
  end
  -- Every job the window held was taken and the window was not full: none
  -- is left. Otherwise some are (left to others, or past the window).
  if taken == #ids and #ids < window then empty[q] = true elseif taken < #ids then empty[q] = false else empty[q] = nil end
  if top then
    redis.call('ZREM', fq, unpack(took))
    redis.call('HDEL', pfxq, unpack(took))
    local g = tonumber(redis.call('HGET', vt, '_g')) or 0
    if tonumber(top) > g then redis.call('HSET', vt, '_g', top) end
  end
  return taken
end
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
    out[#out + 1] = placed[job] or ''
    n = n + 1
  end
  got = got + n
  return n
end
local function interactiveWaiting()
  for q = 0, classes - 1 do
    if q ~= bulkAt and not isEmpty(q) then return true end
  end
  return false
end
-- short: every class gave fewer jobs than it was asked for (so its stream
-- holds no entry left to deliver).
local short = true
for p = 0, classes - 1 do
  if got >= want then break end
  local stream = KEYS[3 * p + 1]
  local most = want - got
  if p == bulkAt and bulkCap >= 0 and (capped or interactiveWaiting()) then
    most = math.min(most, bulkCap)
  end
  if most <= 0 then short = false end
  if most > 0 then
    most = most - read(stream, most)
    if most > 0 and pop(p, most) > 0 then
      most = most - read(stream, most)
    end
    if most == 0 then short = false end
  end
end
report()
-- The affinity hash and its LRU live ttl past their last write: an entry
-- is dropped ttl after its last use anyway.
if remembered then
  redis.call('PEXPIRE', aff, ttl)
  redis.call('PEXPIRE', lru, ttl)
end
local state = ''
if got < want then
  local drained = short
  for q = 0, classes - 1 do
    if not drained then break end
    drained = isEmpty(q)
  end
  if drained then
    state = 'drained'
  elseif place and got == 0 and redis.call('HLEN', pfxq) > 0 then
    state = 'held'
  end
end
table.insert(out, 2, state)
return out
