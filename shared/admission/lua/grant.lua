-- Apply a ledger grant (or a clawback: a negative amount) to the live
-- balance, once. Before the counters are
-- loaded it is parked in 'pre' for load.lua, which skips grants it counted.
-- KEYS[1] funds hash
-- ARGV[1] grant id, ARGV[2] micro-dollars
-- Returns 1 if applied now, 0 if already counted, 2 if parked.
if redis.call('HSETNX', KEYS[1], 'g:' .. ARGV[1], 1) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'init') ~= '1' then
  redis.call('HDEL', KEYS[1], 'g:' .. ARGV[1])
  local pre = redis.call('HGET', KEYS[1], 'pre') or ''
  redis.call('HSET', KEYS[1], 'pre', pre .. ARGV[1] .. ':' .. ARGV[2] .. ',')
  return 2
end
redis.call('HINCRBY', KEYS[1], 'credit', tonumber(ARGV[2]))
return 1
