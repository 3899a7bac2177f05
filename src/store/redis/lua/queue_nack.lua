-- Nack (after queue_prelude.lua). ARGV: 2 id, 3 lease id, 4 delay ms (-1: the back-off),
-- 5 error text, 6 whether an error is given (1/0), 7 jitter in [0, 1), 8 back-off base ms,
-- 9 back-off cap ms, 10 the longest delay allowed.
local r, refused = held(ARGV[2], ARGV[3])
if not r then
  return answer(refused)
end
unplace(r)
r.l = nil
if ARGV[6] == '1' then
  r.err = ARGV[5]
end
local result
if r.a < r.m then
  local delay = tonumber(ARGV[4])
  if delay < 0 then
    -- The same back-off as RetryPolicy::delay in src/queue/backoff.rs.
    local full = math.min(tonumber(ARGV[8]) * 2 ^ math.min(r.a - 1, 63), tonumber(ARGV[9]), tonumber(ARGV[10]))
    local half = math.floor(full / 2)
    delay = math.min(half + math.floor((full - half) * tonumber(ARGV[7])), full)
  end
  local available = now + delay
  if delay > 0 then
    r.st = 'delayed'
    r.at = int(available)
  else
    r.st = 'queued'
    r.at = nil
    woken = woken + 1
  end
  event('retried', r, {av = int(available), c = 'nack'})
  result = cjson.encode({st = r.st, av = int(available)})
else
  r.st = 'dead'
  r.at = int(now)
  event('dead', r, {c = 'nack'})
  result = '{"st":"dead"}'
end
save(r)
place(r)
return answer(result)
