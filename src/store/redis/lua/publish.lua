-- KEYS and ARGV: see src/store/redis/events.rs, which runs this script.
local last = 0
for i = 4, #ARGV do
  local id = string.format('%d', redis.call('INCR', KEYS[1]))
  local data = '{"id":' .. id .. ',' .. ARGV[i] .. ',"timestamp":"' .. ARGV[1] .. '"}'
  if tonumber(ARGV[2]) > 0 then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], id .. '-0', 'd', data)
  end
  redis.call('PUBLISH', ARGV[3], id .. ' ' .. data)
  last = tonumber(id)
end
return last
