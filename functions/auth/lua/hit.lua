-- Fixed-window counter: KEYS[1] the counter, ARGV[1] the window in ms.
-- Returns the count after this hit; the window starts with the first hit.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
