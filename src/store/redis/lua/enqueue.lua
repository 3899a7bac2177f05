-- KEYS and ARGV: see src/store/redis/queue.rs, which runs this script.
local size = redis.call('ZCARD', KEYS[1])
if size >= tonumber(ARGV[3]) then
  return {0, size}
end
local arrival = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[1], string.format('%020d', arrival) .. ARGV[2])
return {1, size + 1}
