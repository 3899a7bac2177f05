-- KEYS and ARGV: see src/store/redis/revocations.rs, which runs this script.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local size = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return {0, size}
end
if size >= tonumber(ARGV[4]) then
  return {-1, size}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return {1, size + 1}
