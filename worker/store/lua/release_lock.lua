-- Release a lock only if it is still ours (it may have expired and been taken by another pass).
-- KEYS: 1 the lock
-- ARGV: 1 the token it was taken with
-- Returns 1 when released, 0 when it was not ours any more.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
