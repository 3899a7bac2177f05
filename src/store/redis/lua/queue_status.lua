-- Status (after queue_prelude.lua). No ARGV of its own.
promote()
local first = redis.call('ZRANGE', K_READY, 0, 0)
local next_task = 'null'
if first[1] then
  next_task = view(load(string.sub(first[1], 21)))
end
return answer('{"size":' .. redis.call('ZCARD', K_READY) .. ',"next":' .. next_task ..
  ',"delayed":' .. redis.call('ZCARD', K_DELAYED) .. ',"leased":' .. redis.call('ZCARD', K_LEASED) ..
  ',"dead":' .. redis.call('ZCARD', K_DEAD) .. '}')
