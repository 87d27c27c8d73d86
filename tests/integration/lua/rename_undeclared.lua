return redis.pcall('RENAME', KEYS[1], ARGV[1])
