-- Queue a verified gateway callback's task message for the account that signed it, in one step
-- with the read of the job's account (the callback endpoint's one round trip, worker/web/notify.py).
-- The web app verified the callback with every account's secrets and built one message per account
-- whose secret signed it: the job's own account must be one of them; a tradeNo with no job takes
-- the first (docs/gateway.md §Callbacks (notify): which secret verifies a callback).
-- KEYS: 1 the job, 2 the broker's list of the callbacks queue (kombu's, not ours: keys.broker_queue)
-- ARGV: 1 the account of a record from before accounts (default), then pairs: 2 account, 3 its task
--   message (worker.runtime.messages), 4 account, 5 message, ... (at least one pair)
-- Returns {found, account, queued}: found 1 when the job exists; account the job's (found) or the
-- first pair's; queued 1 when that account's message was LPUSHed, 0 when the job's account signed
-- nothing here (nothing written: the caller refuses the callback as before).
local state, account = unpack(redis.call('HMGET', KEYS[1], 'state', 'account'))
if not state then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  return {0, ARGV[2], 1}
end
if not account or account == '' then account = ARGV[1] end
for i = 2, #ARGV - 1, 2 do
  if ARGV[i] == account then
    redis.call('LPUSH', KEYS[2], ARGV[i + 1])
    return {1, account, 1}
  end
end
return {1, account, 0}
