-- A page of the dead-letter list (after queue_prelude.lua). ARGV: 2 limit, 3 the id to list
-- after ('' from the start).
local from = '-inf'
if ARGV[3] ~= '' then
  local after = load(ARGV[3])
  if not after then
    return answer('{"refused":"cursor"}')
  end
  from = '(' .. after.seq
end
local limit = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', K_DEAD, from, '+inf', 'LIMIT', 0, limit + 1)
local page = {}
for i, id in ipairs(ids) do
  if i > limit then
    break
  end
  page[#page + 1] = view(load(id))
end
local more = 'false'
if #ids > limit then
  more = 'true'
end
return answer('{"tasks":[' .. table.concat(page, ',') .. '],"more":' .. more .. '}')
