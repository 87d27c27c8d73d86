-- The reconciler's per-job bookkeeping: one more check, and the next one due after a backoff.
-- KEYS: 1 job, 2 the index of its state
-- ARGV: 1 tradeNo, 2 now ms, 3 base delay ms, 4 maximum delay ms, 5 shift ms (index score earlier)
-- Returns the number of checks (0: the job is gone).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local checks = redis.call('HINCRBY', KEYS[1], 'reconcileChecks', 1)
redis.call('HINCRBY', KEYS[1], 'version', 1)  -- `reconcileChecks` is part of the record
local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (checks - 1))
local next_check = tonumber(ARGV[2]) + delay
redis.call('HSET', KEYS[1], 'nextCheckAt', string.format('%d', next_check))
redis.call('ZADD', KEYS[2], 'XX', string.format('%d', next_check - tonumber(ARGV[5])), ARGV[1])
return checks
