for _, k in ipairs(KEYS) do redis.call('EXISTS', k) end return #KEYS
