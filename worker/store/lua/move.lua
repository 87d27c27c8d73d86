-- include: clock
-- Move a job from its state to `target`, atomically, if the move is allowed: the one write of
-- a job's state (the state machine's rules are worker/domain/states.py; this script enforces
-- them with the store's data). Writes the fields, appends to the history and the event stream,
-- keeps the per-state indexes, counts the transition, records a webhook event, increments the
-- counters that move with the state; a lease claim also returns the payload to send. In the same
-- step it may flag the job for a person (`flag_reason`: the settler's move that needs review) or
-- take it out of review (`unflag`: an operator's resolve, only at the `version` they saw).
-- Every applied move increments the record's `version`. TTL: an open or flagged job's keys never
-- expire (PERSIST); a closed, unflagged one's expire `ttl` seconds after this change.
--
-- KEYS: 1 job, 2 history, 3 events, 4 payload, 5 retained, 6 transitions, 7 webhook endpoints,
--       8 webhook outbox, 9 review set, 10 open jobs per account (metrics); then, for each state
--       in `open_states` (in its order), its index and its entered zset; then one hash per
--       counter in `counters`; then the /ops keys: gateway ids (platform), the JST day's totals,
--       tradeNo -> its gateway-id member (so the create's trim can remove it)
-- ARGV (JobStore.move builds them by name, worker/store/scripts.py):
--   target           the state to move to
--   allowed_from     the states it may be moved from, space-separated
--   now              ms, the worker's clock (history, events, indexes)
--   ttl              seconds every key of the job lives after this change
--   events_maxlen    unused (the streams are trimmed by stream_trim.lua, never by XADD)
--   open_states      the open states among allowed_from and target, space-separated (their KEYS)
--   fields           JSON object of fields to set
--   drop             JSON array of fields to delete ("payload": purge the payer data)
--   claim_ms         a lease claim of this many ms ("" no claim)
--   detail           JSON of the history entry's detail
--   trade_no         the job's tradeNo
--   counters         JSON array of [field, ttl], one per counter hash in KEYS
--   retention        seconds the purged payload is kept (0: deleted)
--   detail_by_state  JSON object state -> detail, replacing `detail` when moved from that state ("")
--   increase         a field that must grow for a move from target to itself ("" none)
--   lease_token      a lease holder's write: refused when another claim was made since ("" none)
--   webhook_type     the webhook event to record ("" none)
--   version          the record's version the caller saw: refused unless it still is ("" any)
--   flag_reason      flag the job for review with this reason, in this step ("" no flag)
--   flag_detail      JSON of the needs_review history entry's detail (with flag_reason)
--   unflag           JSON of the review_resolved history entry's detail: out of review ("" no)
--   count_first      "1": a claim of a job never sent also counts its first request (attempts 1),
--                    the request the claimer sends next, in this same step ("" no)
-- ARGV: target, allowed_from, now, ttl, events_maxlen, open_states, fields, drop, claim_ms
-- ARGV: detail, trade_no, counters, retention, detail_by_state, increase, lease_token, webhook_type
-- ARGV: version, flag_reason, flag_detail, unflag, count_first
-- Returns {applied 1|0, the state found, attempts, the claimed payload or false[, 1 lease lost
-- [, 1 version changed]]}; an applied claim also returns {…, 0, 0, the job's account, 1 if it
-- counted the first request}, so the submit signs for its account and sends without another
-- round trip.
local target, allowed_from, now, ttl, events_maxlen, open_states, fields, drop, claim_ms,
      detail, trade_no, counters, retention, detail_by_state, increase, lease_token, webhook_type,
      version, flag_reason, flag_detail, unflag, count_first =
      unpack(ARGV)

local current = redis.call('HGET', KEYS[1], 'state')
if not current then return {0, false, 0, false} end
local allowed = false
for s in string.gmatch(allowed_from, '%S+') do
  if s == current then allowed = true end
end
if not allowed then return {0, current, 0, false} end
if version ~= '' and (redis.call('HGET', KEYS[1], 'version') or '0') ~= version then
  -- changed since the caller read it (an operator's resolve): nothing is written
  return {0, current, 0, false, 0, 1}
end
local payload = false
if lease_token ~= '' and redis.call('HGET', KEYS[1], 'leaseToken') ~= lease_token then
  -- a write of a lease holder: another process claimed the job since (the holder lost it)
  return {0, current, 0, false, 1}
end
local values = cjson.decode(fields)
if increase ~= '' and current == target then
  -- a self-move (more paid on a partial payment) only when the field grows
  local old = tonumber(redis.call('HGET', KEYS[1], increase) or '0') or 0
  local new = tonumber(values[increase] or '')
  if not new or new <= old then return {0, current, 0, false} end
end
local lease_until = false
if claim_ms ~= '' then
  local server_now = server_now_ms()
  if current == 'submitting' then
    -- a claim may take over 'submitting' only from a holder whose lease ran out
    local lease = tonumber(redis.call('HGET', KEYS[1], 'leaseUntil') or '0')
    if lease > server_now then return {0, current, 0, false} end
  end
  lease_until = server_now + tonumber(claim_ms)
  -- a claim is for sending, and returns what to send: a job without its payload is not claimed
  payload = redis.call('GET', KEYS[4]) or redis.call('HGET', KEYS[1], 'payload')
  if not payload then return {0, current, 0, false} end
end
local paid_before = tonumber(redis.call('HGET', KEYS[1], 'paidAmount') or '0') or 0
redis.call('HINCRBY', KEYS[1], 'version', 1)
local counted = 0
if payload and count_first == '1' and tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') == 0 then
  -- the first request, counted before it is sent (count_attempt.lua's write, for a claim)
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  counted = 1
end
local flat = {'state', target, 'updatedAt', now}
if lease_until then flat[#flat + 1] = 'leaseUntil'; flat[#flat + 1] = lease_until end
for k, v in pairs(values) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
redis.call('HSET', KEYS[1], unpack(flat))
local dropped = cjson.decode(drop)
local purge = false
for _, f in ipairs(dropped) do if f == 'payload' then purge = true end end
if purge then
  -- payer data kept for a while (support), then gone; never shown by get_checkout
  local keep = tonumber(retention)
  local old = redis.call('HGET', KEYS[1], 'payload')  -- a record written before the key existed
  if old then redis.call('SET', KEYS[4], old, 'EX', ttl) end
  if keep > 0 and redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[4], KEYS[5])
    redis.call('EXPIRE', KEYS[5], keep)
  else
    redis.call('DEL', KEYS[4])
  end
end
if #dropped > 0 then redis.call('HDEL', KEYS[1], unpack(dropped)) end
if detail_by_state ~= '' then
  -- a detail that depends on the state the job is moved from (e.g. a claim vs a takeover)
  local by_state = cjson.decode(detail_by_state)
  if by_state[current] then detail = by_state[current] end
end
redis.call('RPUSH', KEYS[2], '{"at":' .. now .. ',"from":"' .. current .. '","to":"' .. target ..
           '","detail":' .. detail .. '}')
redis.call('XADD', KEYS[3], '*', 'tradeNo', trade_no, 'from', current,
           'to', target, 'at', now, 'detail', detail)
-- the open states' keys, by state: only open states are indexed (a closed one has none)
local index, entered, n = {}, {}, 0
for s in string.gmatch(open_states, '%S+') do
  n = n + 1
  index[s] = KEYS[9 + 2 * n]
  entered[s] = KEYS[10 + 2 * n]
end
if index[current] then redis.call('ZREM', index[current], trade_no) end
if index[target] then redis.call('ZADD', index[target], now, trade_no) end
-- for the metrics: counted in the same step as the change, so every worker everywhere is counted
-- (per account: the default account's fields keep their names from before accounts)
local account = redis.call('HGET', KEYS[1], 'account') or 'default'
if account == 'default' then
  redis.call('HINCRBY', KEYS[6], current .. '>' .. target, 1)
else
  redis.call('HINCRBY', KEYS[6], current .. '>' .. target .. '>' .. account, 1)
end
if current ~= target then
  if entered[current] then redis.call('ZREM', entered[current], trade_no) end
  if entered[target] then redis.call('ZADD', entered[target], now, trade_no) end
  if account ~= 'default' then
    if entered[current] then redis.call('HINCRBY', KEYS[10], current .. '|' .. account, -1) end
    if entered[target] then redis.call('HINCRBY', KEYS[10], target .. '|' .. account, 1) end
  end
end
if webhook_type ~= '' then
  -- a merchant acts on this change: one webhook event, in the same step as the change, so no
  -- event is lost when a worker dies after it (delivered later by worker.webhooks)
  if redis.call('EXISTS', KEYS[7]) == 1 then
    local seq = redis.call('HINCRBY', KEYS[1], 'webhookSeq', 1)
    redis.call('XADD', KEYS[8], '*', 'type', webhook_type,
               'tradeNo', trade_no, 'sequence', seq, 'at', now,
               'record', cjson.encode(redis.call('HGETALL', KEYS[1])))
  end
end
local counter_list = cjson.decode(counters)
for i, c in ipairs(counter_list) do
  -- counters that must move with the state, exactly once (e.g. successes per payer IP)
  local key = KEYS[10 + 2 * n + i]
  redis.call('HINCRBY', key, c[1], 1)
  redis.call('EXPIRE', key, c[2])
end
-- the console's (/ops) search by the gateway's id and the day's totals, in this same step
local platform_key = KEYS[10 + 2 * n + #counter_list + 1]
local daily_key = KEYS[10 + 2 * n + #counter_list + 2]
local platform_of = KEYS[10 + 2 * n + #counter_list + 3]
if platform_key and values['platFormTradeNo'] and values['platFormTradeNo'] ~= '' then
  local member = tostring(values['platFormTradeNo']) .. ' ' .. trade_no
  redis.call('ZADD', platform_key, 0, member)
  if platform_of then redis.call('HSET', platform_of, trade_no, member) end
end
if daily_key then
  if current ~= target then redis.call('HINCRBY', daily_key, account .. '|' .. target, 1) end
  local paid_after = tonumber(redis.call('HGET', KEYS[1], 'paidAmount') or '0') or 0
  if paid_after > paid_before then
    redis.call('HINCRBYFLOAT', daily_key, account .. '|paid', paid_after - paid_before)
  end
  redis.call('EXPIRE', daily_key, 3456000)
end
if flag_reason ~= '' and redis.call('HGET', KEYS[1], 'flaggedReason') ~= flag_reason then
  -- the flag with the move (flag.lua's writes): never needsReview without a review-queue entry
  redis.call('HSET', KEYS[1], 'needsReview', 'true', 'reviewReason', flag_reason, 'reviewAt', now,
             'flaggedReason', flag_reason)
  redis.call('SADD', KEYS[9], trade_no)
  if redis.call('EXISTS', KEYS[7]) == 1 then
    local seq = redis.call('HINCRBY', KEYS[1], 'webhookSeq', 1)
    redis.call('XADD', KEYS[8], '*', 'type', 'checkout.needs_review',
               'tradeNo', trade_no, 'sequence', seq, 'at', now, 'record', cjson.encode(redis.call('HGETALL', KEYS[1])))
  end
  redis.call('RPUSH', KEYS[2], '{"at":' .. now .. ',"from":null,"to":null,"detail":' .. flag_detail .. '}')
  redis.call('XADD', KEYS[3], '*', 'tradeNo', trade_no, 'from', '', 'to', '',
             'at', now, 'detail', flag_detail)
end
if unflag ~= '' then
  -- an operator's resolve: out of the review queue in the same step as the move
  redis.call('HSET', KEYS[1], 'needsReview', 'false')
  redis.call('HDEL', KEYS[1], 'flaggedReason')  -- the same reason later flags again
  redis.call('SREM', KEYS[9], trade_no)
  redis.call('RPUSH', KEYS[2], '{"at":' .. now .. ',"from":null,"to":null,"detail":' .. unflag .. '}')
  redis.call('XADD', KEYS[3], '*', 'tradeNo', trade_no, 'from', '', 'to', '',
             'at', now, 'detail', unflag)
end
if index[target] or redis.call('HGET', KEYS[1], 'needsReview') == 'true' then
  -- open or flagged: kept until it closes and a person (if needed) has looked at it
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
  if not purge then redis.call('PERSIST', KEYS[4]) end
else
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  if not purge then redis.call('EXPIRE', KEYS[4], ttl) end
end
if payload then
  return {1, current, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), payload, 0, 0, account, counted}
end
return {1, current, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), payload}
