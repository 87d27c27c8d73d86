-- Record one delivery's outcome: the attempt in the job's list, the delivery's fields, when it
-- is due again (or out of the due set), and the claim of the batch's next delivery.
-- KEYS: 1 attempts list, 2 delivery hash ("" none), 3 due set
-- ARGV: 1 attempt entry ("" none), 2 member, 3 due ms ("" leave the set), 4 next member ("" none),
--       5 its claim ms, 6 attempts kept per job, 7 their ttl s, then the delivery's fields: name, value ...
if ARGV[1] ~= '' then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[6]), -1)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
if KEYS[2] ~= '' and #ARGV > 7 then redis.call('HSET', KEYS[2], unpack(ARGV, 8)) end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], 'XX', ARGV[5], ARGV[4]) end
if ARGV[3] == '' then redis.call('ZREM', KEYS[3], ARGV[2]) else redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2]) end
return 1
