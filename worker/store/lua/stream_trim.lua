-- Trim a stream's oldest entries, never one a consumer group has not read and acknowledged.
-- An entry goes only when all three hold: it is not among the newest `maxlen` entries; every
-- consumer group of the stream has read it and none holds it pending (a stream no group reads
-- has nothing to wait for); it is older than `keep_from` (the outbox's replay horizon).
-- At most `batch` entries go per call (the caller calls again while a whole batch went).
-- KEYS: 1 stream
-- ARGV: 1 maxlen, 2 keep_from: an entry id kept with every later one ("" none), 3 batch
-- Returns {entries removed, what held the trim: 'count'|'group:<name>'|'horizon'|'batch'}.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)  -- the smallest id greater than `id`
  local ms, seq = parse(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end

local len = redis.call('XLEN', KEYS[1])
local maxlen, batch = tonumber(ARGV[1]), tonumber(ARGV[3])
if len <= maxlen then return {0, 'count'} end
local n, held = len - maxlen, 'count'
if n > batch then n, held = batch, 'batch' end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n)
local bound = after(oldest[#oldest][1])
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local g = {}
  for i = 1, #info, 2 do g[info[i]] = info[i + 1] end
  local first_unread = after(g['last-delivered-id'])
  if tonumber(g['pending']) > 0 then
    first_unread = redis.call('XPENDING', KEYS[1], g['name'], '-', '+', 1)[1][1]
  end
  if less(first_unread, bound) then bound, held = first_unread, 'group:' .. g['name'] end
end
if ARGV[2] ~= '' and less(ARGV[2], bound) then bound, held = ARGV[2], 'horizon' end
return {redis.call('XTRIM', KEYS[1], 'MINID', bound), held}
