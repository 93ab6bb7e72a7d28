-- Append streamed chunks to a job's result stream, unless the job is gone
-- or erased (its account was deleted): an append must never recreate an
-- erased stream. KEYS[1] job hash, KEYS[2] result stream, KEYS[3] result
-- channel (announces the append to waiters);
-- ARGV[1] '1' on the first batch (marks the job as having shown output, so a
-- reclaim will not rerun it), ARGV[2..] chunks.
-- Returns the number of chunks appended.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HGET', KEYS[1], 'erased') == '1' then
  return 0
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'streamed', '1')
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[2], '*', 'type', 'chunk', 'data', ARGV[i])
end
redis.call('SPUBLISH', KEYS[3], KEYS[2])
return #ARGV - 1
