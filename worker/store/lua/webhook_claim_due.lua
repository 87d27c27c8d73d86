-- Hand out the deliveries that are due, claiming each until a later time (a dead dispatcher's
-- claims come back when that time passes).
-- KEYS: 1 due set
-- ARGV: 1 now ms, 2 at most this many, 3 claimed until ms
-- Returns the members handed out.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(items) do redis.call('ZADD', KEYS[1], ARGV[3], m) end
return items
