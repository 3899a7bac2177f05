-- Enqueue (after queue_prelude.lua). ARGV: 2 id, 3 text, 4 priority, 5 delay ms, 6 max attempts,
-- 7 capacity, 8 idempotency key ('' for none), 9 its fingerprint, 10 its lifetime ms,
-- 11 keys remembered at most.
local id, text, priority = ARGV[2], ARGV[3], ARGV[4]
local delay, max_attempts, capacity = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local key, fingerprint = ARGV[8], ARGV[9]

if key ~= '' then
  local expired = redis.call('ZRANGEBYSCORE', K_KEYS_END, '-inf', now, 'LIMIT', 0, BATCH)
  for _, old in ipairs(expired) do
    redis.call('HDEL', K_KEYS, old)
    redis.call('ZREM', K_KEYS_END, old)
  end
  local known = redis.call('HGET', K_KEYS, key)
  if known then
    local first = cjson.decode(known)
    if first.f ~= fingerprint then
      return answer('{"refused":"key_reused"}')
    end
    return answer('{"replay":' .. known .. '}')
  end
  if redis.call('HLEN', K_KEYS) >= tonumber(ARGV[11]) then
    return answer('{"refused":"keys_full"}')
  end
end
if redis.call('HLEN', K_TASKS) >= capacity then
  return answer('{"refused":"full"}')
end
promote()
local r = {seq = int(redis.call('INCR', K_ARRIVALS)), t = text, p = priority, e = int(now),
  m = max_attempts, a = 0, st = 'queued'}
r.id = id
local available = now
if delay > 0 then
  available = now + delay
  r.st = 'delayed'
  r.at = int(available)
else
  woken = woken + 1
end
save(r)
place(r)
local first = cjson.encode({id = id, t = text, p = priority, e = r.e, st = r.st,
  av = int(available), qs = redis.call('ZCARD', K_READY), f = fingerprint})
if key ~= '' then
  redis.call('HSET', K_KEYS, key, first)
  redis.call('ZADD', K_KEYS_END, now + tonumber(ARGV[10]), key)
end
event('enqueued', r, {st = r.st, av = int(available), qs = redis.call('ZCARD', K_READY)})
return answer('{"first":' .. first .. '}')
