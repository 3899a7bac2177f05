-- Extend a lease (after queue_prelude.lua). ARGV: 2 id, 3 lease id, 4 length ms from now.
local r, refused = held(ARGV[2], ARGV[3])
if not r then
  return answer(refused)
end
unplace(r)
r.at = int(now + tonumber(ARGV[4]))
save(r)
place(r)
return answer('{"le":"' .. r.at .. '"}')
