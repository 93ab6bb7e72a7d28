-- A response served from the cache: record the job as succeeded, so
-- GET /v1/jobs finds it, and ask for its settlement at the cache price.
-- KEYS[1] job hash, KEYS[2] settle stream
-- ARGV[1] job id, ARGV[2] user, ARGV[3] key id, ARGV[4] model, ARGV[5] endpoint,
-- ARGV[6] result JSON, ARGV[7] usage JSON, ARGV[8] ttl ms, ARGV[9] the hold's terms
-- (the settle entry carries what settlement needs, as settle_event.lua's do)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'user', ARGV[2], 'key', ARGV[3], 'model', ARGV[4],
  'endpoint', ARGV[5], 'status', 'succeeded', 'created', now, 'ended', now, 'result', ARGV[6],
  'usage', ARGV[7], 'http', 200, 'cache', '1', 'resv', '1')
-- No expiry yet (ARGV[8] is unused): like every reserved job's, the record
-- is kept until its settlement is done, and the settler then gives it
-- jobs.result_ttl (settle_event.lua, settled.lua).
redis.call('HSET', KEYS[1], 'hold', ARGV[9] or '')
redis.call('XADD', KEYS[2], '*', 'job', ARGV[1], 'user', ARGV[2], 'hold', ARGV[9] or '', 'usage', ARGV[7], 'cache', '1')
return 1
