-- Redis's clock in milliseconds (TIME): every lease time is measured on it, so the workers'
-- clocks do not matter. Included by the scripts that need it (``-- include: clock``).
local function server_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
