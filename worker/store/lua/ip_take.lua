-- Count one transaction for a payer IP today, once per job, unless a daily limit is reached.
-- KEYS: 1 the IP's counters today, 2 the job (a job is counted once, whatever re-drives it)
-- ARGV: 1 daily transactions limit, 2 daily successes limit, 3 counters' ttl s, 4 hashed IP
-- Returns false (counted, or counted before), or the limit reached: 'transactions'|'successes'.
if redis.call('HGET', KEYS[2], 'ipCounted') then return false end
local tx = tonumber(redis.call('HGET', KEYS[1], 'tx') or '0')
local ok = tonumber(redis.call('HGET', KEYS[1], 'ok') or '0')
if tx >= tonumber(ARGV[1]) then return 'transactions' end
if ok >= tonumber(ARGV[2]) then return 'successes' end
redis.call('HINCRBY', KEYS[1], 'tx', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'ipCounted', '1', 'ipHash', ARGV[4])
end
return false
