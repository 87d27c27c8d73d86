-- An operator's resolve that moves nothing (the job is already in the state decided): out of
-- the review queue, with who and why, only if the record is still at the version the operator
-- saw. The check, the fields, the unflag and the review set change are one step (a resolve that
-- moves the job is move.lua with `version` and `unflag`). A closed job's keys then expire.
-- KEYS: 1 job, 2 history, 3 events, 4 review set, 5 payload
-- ARGV: 1 tradeNo, 2 version seen, 3 now ms, 4 ttl, 5 unused (was the events maxlen), 6 fields JSON,
--       7 review_resolved detail JSON, 8 the open states, space-separated
-- Returns 1 resolved, 0 no such job, -1 the version changed, -2 not in review.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if (redis.call('HGET', KEYS[1], 'version') or '0') ~= ARGV[2] then return -1 end
if redis.call('HGET', KEYS[1], 'needsReview') ~= 'true' then return -2 end
local flat = {'needsReview', 'false'}
for k, v in pairs(cjson.decode(ARGV[6])) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('HDEL', KEYS[1], 'flaggedReason')  -- the same reason later flags again
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('RPUSH', KEYS[2], '{"at":' .. ARGV[3] .. ',"from":null,"to":null,"detail":' .. ARGV[7] .. '}')
redis.call('XADD', KEYS[3], '*', 'tradeNo', ARGV[1], 'from', '', 'to', '',
           'at', ARGV[3], 'detail', ARGV[7])
local state = redis.call('HGET', KEYS[1], 'state')
for s in string.gmatch(ARGV[8], '%S+') do
  if s == state then return 1 end  -- still open: no TTL
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[5], ARGV[4])
return 1
