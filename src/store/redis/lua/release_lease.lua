-- KEYS and ARGV: see src/store/redis/lease.rs, which runs this script.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
