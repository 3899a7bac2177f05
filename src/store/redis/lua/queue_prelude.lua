-- The shared part of every queue script (src/store/redis/queue.rs puts it in front of each).
--
-- KEYS: 1 tasks (hash: id -> record JSON), 2 ready (zset: priority, "<seq:020><id>"),
-- 3 delayed (zset: available at, id), 4 leased (zset: lease end, id), 5 dead (zset: seq, id),
-- 6 acked (hash: id -> "<lease>|<until>"), 7 acked ends (zset: until, id), 8 keys (hash:
-- idempotency key -> answer JSON), 9 key ends (zset: expiry, key), 10 arrivals (counter).
-- ARGV[1] is the channel that wakes long polls; the script's own arguments follow.
--
-- A record keeps its large numbers (seq, priority, times) as decimal strings: cjson writes
-- numbers with 14 significant digits, which would round a priority near 2^53.
local K_TASKS, K_READY, K_DELAYED, K_LEASED, K_DEAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_ACKED, K_ACKED_END, K_KEYS, K_KEYS_END, K_ARRIVALS = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local WAKE = ARGV[1]
local BATCH = 1024
local LEASE_EXPIRED = 'the lease ran out before the task was acknowledged'

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(n)
  return string.format('%d', n)
end

-- The record of task `id` (nil when there is none), and its JSON as stored.
local function load(id)
  local raw = redis.call('HGET', K_TASKS, id)
  if not raw then
    return nil
  end
  local r = cjson.decode(raw)
  r.id = id
  return r, raw
end

-- Stores `r`; returns its JSON as stored (without the id, which is the hash's field).
local function save(r)
  local id = r.id
  r.id = nil
  local stored = cjson.encode(r)
  redis.call('HSET', K_TASKS, id, stored)
  r.id = id
  return stored
end

-- A stored record's JSON with its id in front: how a script answers a task without encoding
-- it again.
local function with_id(id, stored)
  return '{"id":"' .. id .. '",' .. string.sub(stored, 2)
end

local function member(r)
  return string.format('%020d', tonumber(r.seq)) .. r.id
end

local function place(r)
  if r.st == 'queued' then
    redis.call('ZADD', K_READY, r.p, member(r))
  elseif r.st == 'delayed' then
    redis.call('ZADD', K_DELAYED, r.at, r.id)
  elseif r.st == 'leased' then
    redis.call('ZADD', K_LEASED, r.at, r.id)
  else
    redis.call('ZADD', K_DEAD, r.seq, r.id)
  end
end

local function unplace(r)
  if r.st == 'queued' then
    redis.call('ZREM', K_READY, member(r))
  elseif r.st == 'delayed' then
    redis.call('ZREM', K_DELAYED, r.id)
  elseif r.st == 'leased' then
    redis.call('ZREM', K_LEASED, r.id)
  else
    redis.call('ZREM', K_DEAD, r.id)
  end
end

-- The transitions this script made, as JSON objects, for the instance to announce.
local events = {}
local woken = 0

local function event(kind, r, extra)
  local e = {k = kind, id = r.id, t = r.t, p = r.p, e = r.e, a = r.a, m = r.m}
  for name, value in pairs(extra or {}) do
    e[name] = value
  end
  events[#events + 1] = cjson.encode(e)
end

-- The task `id` if it is leased by `lease` and the lease runs; else nil and the refusal.
local function held(id, lease)
  local r = load(id)
  if not r then
    return nil, '{"refused":"missing"}'
  end
  if r.st ~= 'leased' or r.l ~= lease or tonumber(r.at) <= now then
    return nil, '{"refused":"lost"}'
  end
  return r
end

-- Delays that are over become queued (no event: a past delay means queued).
local function promote()
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, BATCH)
  for _, id in ipairs(due) do
    local r = load(id)
    redis.call('ZREM', K_DELAYED, id)
    if r then
      r.st = 'queued'
      r.at = nil
      save(r)
      place(r)
    end
  end
end

-- Leases that ran out: back to the queue at their place, or dead without attempts left.
-- Answers whether more ran out than one batch.
local function reap()
  local expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', now, 'LIMIT', 0, BATCH + 1)
  for i, id in ipairs(expired) do
    if i > BATCH then
      break
    end
    local r = load(id)
    redis.call('ZREM', K_LEASED, id)
    if r then
      r.l = nil
      if r.a < r.m then
        r.st = 'queued'
        r.at = nil
        event('expired', r)
        woken = woken + 1
      else
        r.st = 'dead'
        r.at = int(now)
        r.err = LEASE_EXPIRED
        event('dead', r, {c = 'expired'})
      end
      save(r)
      place(r)
    end
  end
  return #expired > BATCH
end

-- When the next delay is over or the next lease runs out ('' when neither).
local function next_due()
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  local l = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
  local due = nil
  if d[2] then
    due = tonumber(d[2])
  end
  if l[2] and (not due or tonumber(l[2]) < due) then
    due = tonumber(l[2])
  end
  if due then
    return int(due)
  end
  return ''
end

-- The script's answer: {"r": answer, "ev": [events]}; long polls woken on the way out.
local function answer(r)
  if woken > 0 then
    redis.call('PUBLISH', WAKE, woken)
  end
  return '{"r":' .. r .. ',"ev":[' .. table.concat(events, ',') .. ']}'
end

-- A record as the API shows it.
local function view(r)
  local st = r.st
  local available = nil
  if st == 'delayed' then
    if tonumber(r.at) <= now then
      st = 'queued'
    else
      available = r.at
    end
  end
  local lease_end = nil
  if st == 'leased' then
    lease_end = r.at
  end
  return cjson.encode({id = r.id, t = r.t, p = r.p, e = r.e, st = st, a = r.a, m = r.m,
    av = available, le = lease_end, err = r.err})
end
