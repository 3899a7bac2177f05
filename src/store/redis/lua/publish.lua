-- KEYS and ARGV: see src/store/redis/events.rs, which runs this script.
local count = #ARGV - 3
if count <= 0 then
  return 0
end
-- The ids of all of them in one step: consecutive, ending with `last`.
local last = redis.call('INCRBY', KEYS[1], count)
for i = 4, #ARGV do
  local id = string.format('%d', last - #ARGV + i)
  local data = '{"id":' .. id .. ',' .. ARGV[i] .. ',"timestamp":"' .. ARGV[1] .. '"}'
  if tonumber(ARGV[2]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], id .. '-0', 'd', data)
  end
  redis.call('PUBLISH', ARGV[3], id .. ' ' .. data)
end
return last
