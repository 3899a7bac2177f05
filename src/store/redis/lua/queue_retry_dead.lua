-- Queue a dead-lettered task again (after queue_prelude.lua). ARGV: 2 id.
local r = load(ARGV[2])
if not r or r.st ~= 'dead' then
  return answer('{"refused":"missing"}')
end
unplace(r)
r.st = 'queued'
r.at = nil
r.a = 0
save(r)
place(r)
woken = woken + 1
event('retried', r, {av = int(now), c = 'dead_letter'})
return answer(view(r))
