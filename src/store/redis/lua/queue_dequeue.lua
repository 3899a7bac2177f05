-- Dequeue for good (after queue_prelude.lua). No ARGV of its own.
promote()
reap()
local popped = redis.call('ZPOPMIN', K_READY)
if #popped == 0 then
  return answer('null')
end
local r = load(string.sub(popped[1], 21))
if not r then
  return answer('null')
end
redis.call('HDEL', K_TASKS, r.id)
local size = redis.call('ZCARD', K_READY)
event('dequeued', r, {qs = size})
return answer(cjson.encode({id = r.id, t = r.t, p = r.p, e = r.e, qs = size}))
