"""The Lua sources of every script the service runs inside Redis (bound and called by ``common.scripts``).

A script runs atomically: one round trip, and no state in between for a crash to lose. Keys come from
``common.keys`` and every protocol constant a script needs (request id format, the poison reply, key prefixes)
comes in as an argument built by ``common.scripts``: nothing of the wire format is spelled here but the identity
fields (``request_id``, ``index``) and ``text`` that the pop and recovery scripts read from a message.
"""

# Refuse a push that would take the queue past its limits, in texts or in bytes: the check and the push in one
# step, so concurrent producers cannot overshoot together. The queued bytes are a counter the pop and the recovery
# keep (it resets whenever the queue is found empty, so a drift — messages pushed or removed by hand — heals).
# A refusal leaves the refusal marker on the request's reply key, expiring soon: the API pipelines its wait for the
# replies right after the push, and that wait must end at once instead of blocking for replies that never come.
# KEYS: requests, queued_bytes, reply:<request id>.  ARGV: depth limit, bytes limit, refusal marker,
#       marker ttl ms, items...
# Returns the new length, or -1 (too many texts) or -2 (too many bytes); nothing pushed then.
PUSH_IF_ROOM = """
local function refuse(code)
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
  return code
end
local depth = redis.call('LLEN', KEYS[1])
if depth + #ARGV - 4 > tonumber(ARGV[1]) then return refuse(-1) end
local size = 0
for i = 5, #ARGV do size = size + #ARGV[i] end
local queued = 0
if depth > 0 then queued = tonumber(redis.call('GET', KEYS[2]) or '0') end
if queued + size > tonumber(ARGV[2]) then return refuse(-2) end
redis.call('SET', KEYS[2], queued + size)
return redis.call('RPUSH', KEYS[1], unpack(ARGV, 5))
"""

# Read one message's identity without trusting it: `unpack_limit` decodes only the first object (a message of
# 3 MB of garbage must not return a million values), and pcall turns bad bytes into nil.
_READ_ITEM = """
local function read_item(raw)
  local ok, _, item = pcall(cmsgpack.unpack_limit, raw, 1)
  if ok and type(item) == 'table' then return item end
  return nil
end
"""

# Pop a window: LRANGE + LTRIM semantics, plus a copy of what was taken in this worker's in-flight list, the
# worker's lease on it, and its registration (a worker holding work is always findable by the reaper).
# Suspects (messages in flight through at least `suspect deaths` worker deaths) are never batched: a window stops
# before the first suspect; a suspect at the head is popped alone, and only when the caller starts a window (never
# while filling one). Texts of requests whose client hung up (the cancelled set) are dropped here and never run: the worker
# counts them (WorkerCounts.cancelled) with its next publish.
# KEYS: requests, inflight:<worker>, deaths, lease:<worker>, workers, cancelled, queued_bytes.
# ARGV: max items, suspect allowed (0/1), worker id, incarnation, lease ms, now (unix s), suspect deaths.
# Returns {skipped, messages...}, or {-1} when another incarnation holds the worker id (nothing popped).
POP_WINDOW = _READ_ITEM + """
local registered = redis.call('HGET', KEYS[5], ARGV[3])
if registered and registered ~= ARGV[4] then return {-1} end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local take = #items
if take > 0 and redis.call('HLEN', KEYS[3]) > 0 then
  for i, raw in ipairs(items) do
    if tonumber(redis.call('HGET', KEYS[3], redis.sha1hex(raw)) or '0') >= tonumber(ARGV[7]) then
      if i > 1 then take = i - 1 elseif ARGV[2] == '1' then take = 1 else take = 0 end
      break
    end
  end
end
if take == 0 then return {0} end
for i = #items, take + 1, -1 do items[i] = nil end
redis.call('LTRIM', KEYS[1], take, -1)
local size = 0
for _, raw in ipairs(items) do size = size + #raw end
if redis.call('LLEN', KEYS[1]) == 0 or redis.call('DECRBY', KEYS[7], size) < 0 then redis.call('SET', KEYS[7], 0) end
local out, skipped = {0}, 0
local cancelled = redis.call('ZCARD', KEYS[6]) > 0
if cancelled then redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[6]) end
for _, raw in ipairs(items) do
  local item = cancelled and read_item(raw)
  if item and type(item.request_id) == 'string' and redis.call('ZSCORE', KEYS[6], item.request_id) then
    skipped = skipped + 1
  else
    out[#out + 1] = raw
  end
end
out[1] = skipped
if #out > 1 then
  redis.call('RPUSH', KEYS[2], unpack(out, 2))
  redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
  redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
end
return out
"""

# Give a worker's in-flight messages back to the head of the queue, in their original order.
# Modes: 'release' (a live worker gives back what it will not answer: no death counted); 'died' (its process is
# gone); 'stalled' (alive, but its lease on the work ran out: skipped if the lease came back meanwhile). 'died'
# and 'stalled' count a death against each message — a hang is a crash that has not happened yet — and
# dead-letter one that reached max_deliveries: recorded (capped list, expiring) and its client answered with
# the poison reply (a template encoded by common.protocol, completed with the message's identity).
# With an incarnation given, nothing happens unless that incarnation (or none) is the registered one: a
# worker never takes back work registered to another process under its id. 'died' also unregisters the worker
# and withdraws its heartbeat.
# Everything that can fail (decoding, encoding) runs before the first write: a script that errors halfway
# keeps its first writes, and a retried recovery would count the same death twice.
# KEYS: inflight:<worker>, requests, deaths, dead_letter, workers, lease:<worker>, heartbeat:<worker>,
#       queued_bytes.
# ARGV: worker id, mode, max_deliveries, reply key prefix, reply ttl, now (unix s), request id pattern (Lua),
#       poison reply template (msgpack), incarnation ('' = any), dead-letter cap, dead-letter ttl s,
#       keep text (0/1), deaths ttl s.
# Returns {requeued, dead_lettered}.
RECOVER_INFLIGHT = _READ_ITEM + """
local mode, incarnation = ARGV[2], ARGV[9]
if mode == 'stalled' and redis.call('EXISTS', KEYS[6]) == 1 then return {0, 0} end
if incarnation ~= '' then
  local registered = redis.call('HGET', KEYS[5], ARGV[1])
  if registered and registered ~= incarnation then return {0, 0} end
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local strike = mode ~= 'release'
local plan = {}
for i = #items, 1, -1 do
  local raw = items[i]
  local digest = redis.sha1hex(raw)
  local deaths = 0
  if strike then deaths = tonumber(redis.call('HGET', KEYS[3], digest) or '0') + 1 end
  local step = {raw = raw, digest = digest, deaths = deaths}
  if strike and deaths >= tonumber(ARGV[3]) then
    local item = read_item(raw)
    local fields = {reason = 'worker ' .. ARGV[1] .. ' was the ' .. deaths .. 'th worker to stop holding it',
      deaths = deaths, at = tonumber(ARGV[6]), sha1 = digest, bytes = #raw}
    if item and type(item.request_id) == 'string' and string.match(item.request_id, ARGV[7])
        and type(item.index) == 'number' and item.index >= 0 and item.index % 1 == 0 then
      local reply = cmsgpack.unpack(ARGV[8])
      reply.request_id = item.request_id
      reply.index = item.index
      reply.error.message = 'set aside after ' .. deaths .. ' workers died processing it'
      step.reply_key = ARGV[4] .. item.request_id
      step.reply = cmsgpack.pack(reply)
      fields.request_id = item.request_id
      fields.index = item.index
      if ARGV[12] == '1' and type(item.text) == 'string' then fields.text = item.text end
    else
      fields.undecodable = true
    end
    local ok, record = pcall(cjson.encode, fields)
    if not ok then fields.text = nil; record = cjson.encode(fields) end
    step.record = record
  end
  plan[#plan + 1] = step
end
local requeued, dead = 0, 0
for _, step in ipairs(plan) do
  if step.record then
    redis.call('HDEL', KEYS[3], step.digest)
    if step.reply then
      redis.call('RPUSH', step.reply_key, step.reply)
      redis.call('EXPIRE', step.reply_key, tonumber(ARGV[5]))
    end
    redis.call('LPUSH', KEYS[4], step.record)
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[10]) - 1)
    redis.call('EXPIRE', KEYS[4], tonumber(ARGV[11]))
    dead = dead + 1
  else
    if strike then
      redis.call('HSET', KEYS[3], step.digest, step.deaths)
      redis.call('EXPIRE', KEYS[3], tonumber(ARGV[13]))
    end
    redis.call('LPUSH', KEYS[2], step.raw)
    redis.call('INCRBY', KEYS[8], #step.raw)
    requeued = requeued + 1
  end
end
redis.call('DEL', KEYS[1])
if mode == 'died' then
  local registered = redis.call('HGET', KEYS[5], ARGV[1])
  if registered and (incarnation == '' or registered == incarnation) then
    redis.call('HDEL', KEYS[5], ARGV[1])
    redis.call('DEL', KEYS[7])
  end
end
return {requeued, dead}
"""

# The state of every registered worker, in one round trip: its incarnation, whether its heartbeat key exists,
# how many messages it holds and whether its lease on them is current. One reading for the API's /readyz and
# /metrics and for the reaper (see ``WorkerState``).
# KEYS: workers.  ARGV: heartbeat key prefix, in-flight key prefix, lease key prefix.
# Returns {worker id, incarnation, heartbeat 0/1, held, lease 0/1, ...}.
WORKER_STATES = """
local out = {}
local registry = redis.call('HGETALL', KEYS[1])
for i = 1, #registry, 2 do
  local id = registry[i]
  out[#out + 1] = id
  out[#out + 1] = registry[i + 1]
  out[#out + 1] = redis.call('EXISTS', ARGV[1] .. id)
  out[#out + 1] = redis.call('LLEN', ARGV[2] .. id)
  out[#out + 1] = redis.call('EXISTS', ARGV[3] .. id)
end
return out
"""

# A heartbeat: claim the worker id for this incarnation (unless another one holds it) and write the readable
# hash with its expiry. Returns the incarnation registered under the id afterwards: not ours means another live
# process runs under the same id.
# KEYS: workers, heartbeat:<worker>.  ARGV: worker id, incarnation, ttl s, field, value, field, value...
BEAT = """
local registered = redis.call('HGET', KEYS[1], ARGV[1])
if registered and registered ~= ARGV[2] then return registered end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return ARGV[2]
"""

# A worker stopping: unregister and delete its heartbeat, unless another incarnation holds the id by now.
# KEYS: workers, heartbeat:<worker>.  ARGV: worker id, incarnation.
WITHDRAW = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# Delete a lock only if it still holds our token (it may have expired and been taken by another worker).
# KEYS: lock.  ARGV: token.
RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
