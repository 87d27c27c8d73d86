-- A person dismisses an orphan entry (money reported for a tradeNo with no job) after looking at
-- it: out of the review set with who, when and why; the entry expires `ttl` seconds later.
-- KEYS: 1 orphan entry, 2 review set
-- ARGV: 1 tradeNo, 2 now ms, 3 operator, 4 reason, 5 ttl
-- Returns 1 dismissed, 0 no such entry, -2 not waiting for a person.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'needsReview') ~= 'true' then return -2 end
redis.call('HSET', KEYS[1], 'needsReview', 'false', 'dismissedBy', ARGV[3], 'dismissedReason', ARGV[4],
           'dismissedAt', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
