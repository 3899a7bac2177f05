-- Lease (after queue_prelude.lua). ARGV: 2 lease length ms, then one fresh lease id per task
-- wanted (their number is the count).
local length = tonumber(ARGV[2])
promote()
reap()
local leased = {}
for i = 3, #ARGV do
  local popped = redis.call('ZPOPMIN', K_READY)
  if #popped == 0 then
    break
  end
  local r = load(string.sub(popped[1], 21))
  if r then
    r.a = r.a + 1
    r.st = 'leased'
    r.l = ARGV[i]
    r.at = int(now + length)
    save(r)
    place(r)
    event('leased', r, {l = r.l, le = r.at})
    leased[#leased + 1] = cjson.encode({id = r.id, t = r.t, p = r.p, e = r.e, a = r.a, m = r.m,
      l = r.l, le = r.at})
  end
end
return answer('{"tasks":[' .. table.concat(leased, ',') .. '],"qs":' ..
  redis.call('ZCARD', K_READY) .. ',"due":"' .. next_due() .. '"}')
