-- Acknowledge (after queue_prelude.lua). ARGV: pairs of task id and lease id from 2 on.
-- Answers one value per pair: the record of a task acknowledged now (with its id; the instance
-- makes the `acked` transition from it), or a word: again (acknowledged before by the same
-- lease, whose end has not come), lost (the lease ran out or was superseded) or missing.
local gone = redis.call('ZRANGEBYSCORE', K_ACKED_END, '-inf', now, 'LIMIT', 0, BATCH)
for _, old in ipairs(gone) do
  redis.call('HDEL', K_ACKED, old)
  redis.call('ZREM', K_ACKED_END, old)
end
local results = {}
for i = 2, #ARGV - 1, 2 do
  local id, lease = ARGV[i], ARGV[i + 1]
  local r, stored = load(id)
  local outcome
  if r then
    if r.st == 'leased' and r.l == lease and tonumber(r.at) > now then
      unplace(r)
      redis.call('HDEL', K_TASKS, id)
      redis.call('HSET', K_ACKED, id, lease .. '|' .. r.at)
      redis.call('ZADD', K_ACKED_END, r.at, id)
      outcome = with_id(id, stored)
    else
      outcome = '"lost"'
    end
  else
    local acked = redis.call('HGET', K_ACKED, id)
    if acked then
      local bar = string.find(acked, '|', 1, true)
      if string.sub(acked, 1, bar - 1) == lease and tonumber(string.sub(acked, bar + 1)) > now then
        outcome = '"again"'
      else
        outcome = '"lost"'
      end
    else
      outcome = '"missing"'
    end
  end
  results[#results + 1] = outcome
end
return answer('[' .. table.concat(results, ',') .. ']')
