-- Put a job in front of a person: needsReview with its reason, in the review set, a
-- `needs_review` event (and a webhook event when endpoints exist). Once per reason. A flagged
-- job's keys never expire (PERSIST) until it is resolved; the record's `version` grows.
-- KEYS: 1 job, 2 history, 3 events, 4 review set, 5 webhook endpoints, 6 webhook outbox, 7 payload
-- ARGV: 1 tradeNo, 2 reason, 3 now ms, 4 detail JSON, 5 events maxlen
-- Returns 1 when flagged, 0 when the job is gone or already flagged for this reason.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
-- once per reason (a resent callback flags once); a move may have set needsReview and the
-- reason already, in its own step, so the record is never half-flagged
if redis.call('HGET', KEYS[1], 'flaggedReason') == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'needsReview', 'true', 'reviewReason', ARGV[2], 'reviewAt', ARGV[3],
           'flaggedReason', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[7])
if redis.call('EXISTS', KEYS[5]) == 1 then
  local seq = redis.call('HINCRBY', KEYS[1], 'webhookSeq', 1)
  redis.call('XADD', KEYS[6], '*', 'type', 'checkout.needs_review',
             'tradeNo', ARGV[1], 'sequence', seq, 'at', ARGV[3], 'record', cjson.encode(redis.call('HGETALL', KEYS[1])))
end
redis.call('RPUSH', KEYS[2], '{"at":' .. ARGV[3] .. ',"from":null,"to":null,"detail":' .. ARGV[4] .. '}')
redis.call('XADD', KEYS[3], '*', 'tradeNo', ARGV[1], 'from', '', 'to', '',
           'at', ARGV[3], 'detail', ARGV[4])
return 1
