-- Record the outcomes of some deliveries of one batch in one step: for each, the attempt in its
-- job's list, the delivery's fields, and when it is due again (or out of the due set); then the
-- batch's deliveries still to be sent are claimed again until a later time (so only a dead
-- worker's deliveries come back to the dispatcher, and soon).
-- KEYS: 1 due set, then per outcome its attempts list and its delivery hash ("" for either: none)
-- ARGV: 1 attempts kept per job, 2 their ttl s, 3 claim until ms, 4 c: members claimed, then the c
--       members, then per outcome: attempt entry ("" none), member, due ms ("" leave the set),
--       n, then n field names and values (2n values)
-- Returns the number of outcomes recorded.
local keep, ttl, claim_until, c = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
for i = 5, 4 + c do redis.call('ZADD', KEYS[1], 'XX', claim_until, ARGV[i]) end
local a, k, done = 5 + c, 2, 0
while a <= #ARGV do
  local entry, member, due, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  if entry ~= '' and KEYS[k] ~= '' then
    redis.call('RPUSH', KEYS[k], entry)
    redis.call('LTRIM', KEYS[k], -keep, -1)
    redis.call('EXPIRE', KEYS[k], ttl)
  end
  if KEYS[k + 1] ~= '' and n > 0 then redis.call('HSET', KEYS[k + 1], unpack(ARGV, a + 4, a + 3 + 2 * n)) end
  if due == '' then redis.call('ZREM', KEYS[1], member) else redis.call('ZADD', KEYS[1], due, member) end
  a, k, done = a + 4 + 2 * n, k + 2, done + 1
end
return done
