-- Delete a dead-lettered task (after queue_prelude.lua). ARGV: 2 id.
local r = load(ARGV[2])
if not r or r.st ~= 'dead' then
  return answer('{"refused":"missing"}')
end
unplace(r)
redis.call('HDEL', K_TASKS, r.id)
event('deleted', r)
return answer('{}')
