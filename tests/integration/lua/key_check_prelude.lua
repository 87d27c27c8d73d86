-- Put before every script in test_cluster_keys.py: each redis.call/redis.pcall's keys (COMMAND
-- GETKEYS, Redis's own key positions) must be in KEYS, else the script raises. Shadows `redis`
-- for the rest of the script (the global table itself may be read-only).
local __declared = {}
for _, key in ipairs(KEYS) do __declared[key] = true end
local function __check(...)
  local ok, found = pcall(redis.call, 'COMMAND', 'GETKEYS', ...)
  if not ok then
    local why = type(found) == 'table' and tostring(found.err) or tostring(found)
    if string.find(why, 'no key arguments', 1, true) then return end
    error('key check: ' .. why)
  end
  for _, key in ipairs(found) do
    if not __declared[key] then
      error('undeclared key ' .. key .. ' in ' .. tostring((...)) .. ': pass it in KEYS')
    end
  end
end
local redis = setmetatable({
  call = function(...) __check(...); return redis.call(...) end,
  pcall = function(...) __check(...); return redis.pcall(...) end,
}, {__index = redis})
