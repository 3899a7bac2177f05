-- KEYS and ARGV: see src/store/redis/queue.rs, which runs this script.
local popped = redis.call('ZPOPMIN', KEYS[1])
if #popped == 0 then
  return false
end
return {popped[1], redis.call('ZCARD', KEYS[1])}
