-- One task as the API shows it (after queue_prelude.lua). ARGV: 2 id.
local r = load(ARGV[2])
if not r then
  return answer('null')
end
return answer(view(r))
