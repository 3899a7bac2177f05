-- KEYS and ARGV: see src/store/redis/login.rs, which runs this script.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local wait = tat - now - (tonumber(ARGV[2]) - 1) * interval
if wait > 0 then
  return wait
end
if ARGV[3] == 'spend' then
  local next_tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', string.format('%d', next_tat - now))
end
return 0
