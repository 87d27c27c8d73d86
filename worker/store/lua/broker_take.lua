-- include: clock
-- Take the next message of a worker's queues and register it as unacknowledged, in one step:
-- what kombu's Redis transport does with a BRPOP and then a MULTI of ZADD + HSET (its
-- visibility-timeout bookkeeping, restored by kombu when not acknowledged in time), in one round
-- trip instead of two, and without the window between the two where a crash loses the message.
-- Used by worker/runtime/broker.py while a queue has a backlog; an empty answer sends the
-- consumer back to BRPOP. The entry is kombu's own: [message, exchange, routing key] in JSON,
-- scored by the time taken (seconds).
-- KEYS: the queues' lists in the order BRPOP would take them, then kombu's unacked hash, then
--       its unacked index (zset)
-- ARGV: none
-- Returns {list key, message} or false when every list is empty.
local n = #KEYS - 2
local unacked, index = KEYS[n + 1], KEYS[n + 2]
for i = 1, n do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local props = cjson.decode(item)['properties']
    local info = props['delivery_info']
    local tag = props['delivery_tag']
    redis.call('ZADD', index, server_now_ms() / 1000, tag)
    -- the message exactly as it was pushed (not re-encoded), then exchange and routing key
    redis.call('HSET', unacked, tag, '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' ..
               cjson.encode(info['routing_key']) .. ']')
    return {KEYS[i], item}
  end
end
return false
