-- A deliver batch's first step: each delivery's record and its event's body, and every one of the
-- batch still in the due set claimed until a later time (only a dead worker's come back).
-- KEYS: 1 due set, then per delivery: its delivery hash, its event's body
-- ARGV: 1 claimed until ms, then the deliveries' due-set members (in KEYS' order)
-- Returns per delivery {its hash as a flat field/value list, its body or nil}.
local out = {}
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  local k = 2 * i - 2
  out[#out + 1] = {redis.call('HGETALL', KEYS[k]), redis.call('GET', KEYS[k + 1])}
end
return out
