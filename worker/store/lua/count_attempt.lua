-- include: clock
-- Count one request of a lease holder: only while its lease is held and has not run out.
-- KEYS: 1 job
-- ARGV: 1 lease token, then the fields to set with it: name, value, ...
-- Returns the attempts counted so far, or -1 when the lease is not held.
if redis.call('HGET', KEYS[1], 'leaseToken') ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'state') ~= 'submitting' then return -1 end
if tonumber(redis.call('HGET', KEYS[1], 'leaseUntil') or '0') <= server_now_ms() then return -1 end
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
redis.call('HINCRBY', KEYS[1], 'version', 1)  -- `attempts` is part of the record
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
