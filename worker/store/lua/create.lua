-- Store a new job as `queued`, or say it exists (same payload) or conflicts (another payload).
-- A new job is open: its keys have no TTL (PERSIST; move.lua gives them one when it closes).
-- KEYS: 1 job, 2 history, 3 events, 4 payload, 5 index:queued, 6 entered:queued, 7 transitions,
--       8 open jobs per account (metrics), 9 jobs by createdAt, 10 tradeNos by lex,
--       11 the JST day's totals (/ops), 12 gateway ids by lex, 13 tradeNo -> its gateway-id member,
--       14 (optional) the broker's list for the job's first task message (keys.broker_queue)
-- ARGV: 1 tradeNo, 2 fingerprint, 3 now ms, 4 ttl (unused: an open job never expires),
--       5 events maxlen, 6 record JSON (with `version` 1 and its `account`), 7 payload JSON,
--       8 the job's account (fixed here, never changed),
--       9 (optional, with KEYS[14]) the job's first task message, as kombu's Redis transport
--         would LPUSH it (worker.runtime.messages): pushed when the job is created, or when the
--         same payload is enqueued again while the job is still queued (the lease makes a second
--         message harmless) — so the job and its message are written together or not at all
-- Returns {'created'|'existing'|'conflict', state}.
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if fp then
  local state = redis.call('HGET', KEYS[1], 'state')
  if fp == ARGV[2] then
    if KEYS[14] and state == 'queued' then redis.call('LPUSH', KEYS[14], ARGV[9]) end
    return {'existing', state}
  end
  return {'conflict', state}
end
local fields = cjson.decode(ARGV[6])
local flat = {}
for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('SET', KEYS[4], ARGV[7])
redis.call('RPUSH', KEYS[2], '{"at":' .. ARGV[3] .. ',"from":null,"to":"queued","detail":{}}')
redis.call('XADD', KEYS[3], '*', 'tradeNo', ARGV[1], 'from', '',
           'to', 'queued', 'at', ARGV[3], 'detail', '{}')
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
-- for the metrics: entry times per open state (the reconciler's index above is rescheduled)
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
-- counted per account: the default account's fields keep their names from before accounts
if ARGV[8] == 'default' then
  redis.call('HINCRBY', KEYS[7], 'new>queued', 1)
else
  redis.call('HINCRBY', KEYS[7], 'new>queued>' .. ARGV[8], 1)
  redis.call('HINCRBY', KEYS[8], 'queued|' .. ARGV[8], 1)
end
-- the console's indexes and the day's totals (/ops), in the same step. The indexes forget a job
-- once it has outlived the TTL (at most 50 a create, oldest first: they shrink as fast as they
-- grow), the day's totals live 40 days
local expired = redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', tonumber(ARGV[3]) - 1000 * tonumber(ARGV[4]),
                           'LIMIT', 0, 50)
for _, old in ipairs(expired) do
  redis.call('ZREM', KEYS[9], old)
  redis.call('ZREM', KEYS[10], old)
  local member = redis.call('HGET', KEYS[13], old)
  if member then
    redis.call('ZREM', KEYS[12], member)
    redis.call('HDEL', KEYS[13], old)
  end
end
redis.call('ZADD', KEYS[9], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[10], 0, ARGV[1])
redis.call('HINCRBY', KEYS[11], ARGV[8] .. '|created', 1)
redis.call('EXPIRE', KEYS[11], 3456000)
-- a job left over from an older version (expired hash, history still there) keeps no TTL either
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
if KEYS[14] then redis.call('LPUSH', KEYS[14], ARGV[9]) end
return {'created', 'queued'}
