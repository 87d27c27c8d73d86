-- a key built inside the script from an argument, as the store's scripts did before
redis.call('ZADD', ARGV[1] .. 'queued', 1, 'x') return 1
