-- Prepended to every script that ends a job (complete, start, cancel): the
-- one way a reserved job's end asks for its settlement. The entry carries
-- everything settlement needs (the hold's terms as admitted, the usage, the
-- engine time, whether the cache served it), so a settler that reaches it
-- after the job hash expired or was erased still charges what was used.
-- The job hash of a reserved job loses its expiry here (PERSIST): its hold
-- must not lapse before it settles, however long the settlers are down (the
-- lapse releases only holds whose job record is gone), so the record is kept
-- until the settler, once the settlement is done, gives it jobs.result_ttl
-- again (settled.lua). Callers set the job hash's expiry BEFORE calling this.
-- jk: job hash, sk: settle stream, id: job id.
local function settle_event(jk, sk, id)
  -- One read: whether it is reserved, and what its entry carries.
  local v = redis.call('HMGET', jk, 'resv', 'user', 'hold', 'usage', 'engine_ms', 'cache')
  if v[1] ~= '1' then return end
  redis.call('XADD', sk, '*', 'job', id, 'user', v[2] or '', 'hold', v[3] or '',
    'usage', v[4] or '', 'engine_ms', v[5] or '', 'cache', v[6] or '')
  redis.call('PERSIST', jk)
end
