-- Drop the record of an erased job (its account was deleted) once its
-- settlement is acknowledged. KEYS[1] job hash. Returns 1 if dropped.
if redis.call('HGET', KEYS[1], 'erased') == '1' then
  redis.call('UNLINK', KEYS[1])
  return 1
end
return 0
