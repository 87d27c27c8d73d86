return redis.call('SET', ARGV[1], 'v')
