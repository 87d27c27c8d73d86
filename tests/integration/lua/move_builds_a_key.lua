-- put into move.lua before its first EXPIRE: a key built from an argument
redis.call('ZADD', open_states .. 'x', 1, trade_no)
