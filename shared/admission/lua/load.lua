-- Fill a user's live counters from the ledger's sums, unless another process
-- did first. Grants (and clawbacks) are remembered by id so one applied
-- meanwhile (grant.lua) is not counted twice. Counters already loaded for
-- another period switch to this one: only the period's sums change; the
-- credit and the holds of jobs in flight stay.
-- KEYS[1] funds hash
-- ARGV[1] period, ARGV[2] credit, ARGV[3] included used, ARGV[4] overage used,
-- ARGV[5..] grant ids in the credit
if redis.call('HGET', KEYS[1], 'init') == '1' then
  if redis.call('HGET', KEYS[1], 'per') == ARGV[1] then return 0 end
  redis.call('HSET', KEYS[1], 'per', ARGV[1], 'inc_used', ARGV[3], 'ov_used', ARGV[4])
  return 2
end
local credit = tonumber(ARGV[2])
for i = 5, #ARGV do
  redis.call('HSET', KEYS[1], 'g:' .. ARGV[i], 1)
end
-- A grant applied before this load (parked in 'pre'; a clawback's amount is
-- negative) counts once.
local pre = redis.call('HGET', KEYS[1], 'pre')
if pre then
  for id, amt in string.gmatch(pre, '(%d+):(%-?%d+)') do
    if redis.call('HEXISTS', KEYS[1], 'g:' .. id) == 0 then
      credit = credit + tonumber(amt)
      redis.call('HSET', KEYS[1], 'g:' .. id, 1)
    end
  end
end
redis.call('HSET', KEYS[1], 'init', 1, 'per', ARGV[1], 'credit', credit, 'inc_used', ARGV[3],
  'ov_used', ARGV[4], 'inc_held', 0, 'cr_held', 0, 'ov_held', 0)
redis.call('HDEL', KEYS[1], 'pre')
return 1
