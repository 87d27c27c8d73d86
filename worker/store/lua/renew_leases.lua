-- include: clock
-- The lease heartbeat: extend every lease still ours (same token, still submitting) in one call.
-- KEYS: the jobs
-- ARGV: 1 lease length ms, then one token per job (in KEYS' order)
-- Returns one 1 (renewed) or 0 (no longer ours) per job.
local until_ms = server_now_ms() + tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'leaseToken') == ARGV[i + 1] and redis.call('HGET', key, 'state') == 'submitting' then
    redis.call('HSET', key, 'leaseUntil', until_ms)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
