"""Lua scripts of the worker's queue operations. Each runs atomically inside Redis: one round trip, and no
state in between for a crash to lose."""

# Pop a window: LRANGE + LTRIM semantics, plus a copy of what was taken in this worker's in-flight list.
# Suspects (messages that were in flight when a worker died) are never batched: a window stops before the
# first suspect, and a suspect at the head is popped alone.
# KEYS: requests, inflight:<worker>, deaths.  ARGV: max items.  Returns the popped messages.
POP_WINDOW = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
local take = #items
if redis.call('HLEN', KEYS[3]) > 0 then
  for i, raw in ipairs(items) do
    if redis.call('HEXISTS', KEYS[3], redis.sha1hex(raw)) == 1 then
      if i == 1 then take = 1 else take = i - 1 end
      break
    end
  end
end
if take < #items then
  for i = #items, take + 1, -1 do items[i] = nil end
end
redis.call('LTRIM', KEYS[1], take, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
return items
"""

# Give a worker's in-flight messages back to the head of the queue, in their original order.
# With count_death = 1 (the worker died): each message's death count goes up; one that reached
# max_deliveries is not re-queued but dead-lettered with the reason, and its client answered with an error.
# KEYS: inflight:<worker>, requests, deaths, dead_letter, workers.
# ARGV: worker id, count_death (0/1), max_deliveries, reply key prefix, reply ttl, now (unix s).
# Returns {requeued, dead_lettered}.
RECOVER_INFLIGHT = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local requeued, dead = 0, 0
for i = #items, 1, -1 do
  local raw = items[i]
  local digest = redis.sha1hex(raw)
  local deaths = 0
  if ARGV[2] == '1' then deaths = redis.call('HINCRBY', KEYS[3], digest, 1) end
  if ARGV[2] == '1' and deaths >= tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[3], digest)
    local reason = 'worker ' .. ARGV[1] .. ' was the ' .. deaths .. 'th worker to die holding this message'
    local ok, item = pcall(cmsgpack.unpack, raw)
    local record
    if ok and type(item) == 'table' and type(item.request_id) == 'string'
        and string.match(item.request_id, '^%x+$') and #item.request_id == 32 and type(item.index) == 'number' then
      local key = ARGV[4] .. item.request_id
      redis.call('RPUSH', key, cmsgpack.pack({v = 1, request_id = item.request_id, index = item.index,
        queue_ms = 0, inference_ms = 0,
        error = {code = 'poison_message', message = 'set aside after ' .. deaths .. ' workers died processing it'}}))
      redis.call('EXPIRE', key, tonumber(ARGV[5]))
      record = cjson.encode({request_id = item.request_id, index = item.index, text = item.text, reason = reason,
        deaths = deaths, at = tonumber(ARGV[6])})
    else
      record = cjson.encode({undecodable = true, bytes = #raw, sha1 = digest, reason = reason, deaths = deaths,
        at = tonumber(ARGV[6])})
    end
    redis.call('RPUSH', KEYS[4], record)
    dead = dead + 1
  else
    redis.call('LPUSH', KEYS[2], raw)
    requeued = requeued + 1
  end
end
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then redis.call('SREM', KEYS[5], ARGV[1]) end
return {requeued, dead}
"""
