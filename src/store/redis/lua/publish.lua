-- KEYS and ARGV: see src/store/redis/events.rs, which runs this script.
local id = string.format('%d', redis.call('INCR', KEYS[1]))
local data = '{"id":' .. id .. ',' .. ARGV[1] .. ',"timestamp":"' .. ARGV[2] .. '"}'
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id .. '-0', 'd', data)
end
redis.call('PUBLISH', ARGV[4], id .. ' ' .. data)
return tonumber(id)
