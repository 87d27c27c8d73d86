-- Set fields of a job that are not a change of state (a link, a gateway message...), and grow
-- its `version` with them, in one step; nothing when the job is gone.
-- KEYS: 1 job
-- ARGV: field, value, field, value, ...
-- Returns 1 when written, 0 when there is no such job.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
