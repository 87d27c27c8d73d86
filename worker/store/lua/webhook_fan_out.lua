-- One fan-out pass in one call: for each event, its body (kept if already there), one delivery
-- per endpoint that wants it (a record that already exists keeps its status and attempts: a
-- pass re-read after its dispatcher died changes nothing delivered), due now; then the event is
-- acknowledged.
-- KEYS: 1 due set, 2 outbox, then per event its body key and its delivery keys
-- ARGV: 1 group, 2 now ms, 3 keep s, then per event: id, type, tradeNo, sequence, webhook id, body, n,
--       n endpoint ids
-- Returns the number of keys written (bodies and deliveries).
local k, a = 3, 4
while a <= #ARGV do
  local id, kind, trade_no, seq, hook_id, body, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
                                                   ARGV[a + 5], tonumber(ARGV[a + 6])
  a = a + 7
  if n > 0 then
    redis.call('SET', KEYS[k], body, 'EX', ARGV[3], 'NX')
    k = k + 1
    for i = 1, n do
      local endpoint = ARGV[a]
      redis.call('HSETNX', KEYS[k], 'status', 'pending')
      redis.call('HSET', KEYS[k], 'eventId', id, 'endpoint', endpoint, 'type', kind, 'tradeNo', trade_no,
                 'sequence', seq, 'webhookId', hook_id, 'createdAt', ARGV[2])
      redis.call('HSETNX', KEYS[k], 'attempts', 0)
      redis.call('EXPIRE', KEYS[k], ARGV[3])
      redis.call('ZADD', KEYS[1], 'NX', ARGV[2], id .. '|' .. endpoint)
      k, a = k + 1, a + 1
    end
  end
  redis.call('XACK', KEYS[2], ARGV[1], id)
end
return k - 3
