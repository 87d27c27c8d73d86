-- A gateway report of money (a paid callback or query answer) for a tradeNo with no job: kept
-- for a person, never dropped. Writes the orphan entry (the last report's fields, how many came,
-- needsReview) and puts the tradeNo in the review set, in one step; no TTL until dismissed.
-- KEYS: 1 job, 2 orphan entry, 3 review set
-- ARGV: 1 tradeNo, 2 now ms, 3 fields JSON (source, status, paidAmount, platFormTradeNo...)
-- Returns 1 when recorded, 0 when the job exists after all (apply the report to it instead).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local flat = {'tradeNo', ARGV[1], 'needsReview', 'true', 'lastAt', ARGV[2]}
for k, v in pairs(cjson.decode(ARGV[3])) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
if redis.call('HSETNX', KEYS[2], 'firstAt', ARGV[2]) == 0 then
  -- a resend after a person dismissed it: in front of a person again
  redis.call('HDEL', KEYS[2], 'dismissedBy', 'dismissedReason', 'dismissedAt')
end
redis.call('HSET', KEYS[2], unpack(flat))
redis.call('HINCRBY', KEYS[2], 'reports', 1)
redis.call('PERSIST', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
