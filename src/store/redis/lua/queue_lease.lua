-- Lease (after queue_prelude.lua). ARGV: 2 lease length ms, then one fresh lease id per task
-- wanted (their number is the count). Each task leased is answered as its record (encoded once,
-- for the hash and the answer alike); the instance makes the `leased` transitions from them.
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
    local saved = save(r)
    place(r)
    -- The record as saved, with its id: the instance announces the lease from it.
    leased[#leased + 1] = with_id(r.id, saved)
  end
end
return answer('{"tasks":[' .. table.concat(leased, ',') .. '],"qs":' ..
  redis.call('ZCARD', K_READY) .. ',"due":"' .. next_due() .. '"}')
