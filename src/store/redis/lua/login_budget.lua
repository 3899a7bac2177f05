-- KEYS and ARGV: see src/store/redis/login.rs, which runs this script.
-- The GCRA of src/auth/rate_limit.rs (Budget::reserve and Budget::refund), on the Redis clock.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval
local backoff_max = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local function keep(tat)
  if tat > now then
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', tat - now))
  else
    redis.call('DEL', KEYS[1])
  end
end
if ARGV[4] == 'refund' then
  if stored then
    keep(tonumber(stored) - interval)
  end
  return 0
end
local tat = tonumber(stored or now)
if tat < now then
  tat = now
end
if tat - now <= tolerance then
  keep(tat + interval)
  return 0
end
if backoff_max > 0 then
  local ceiling = now + tolerance + interval + backoff_max
  local pushed = tat + interval
  if pushed > ceiling then
    pushed = math.max(ceiling, tat)
  end
  tat = pushed
  keep(tat)
end
return tat - now - tolerance
