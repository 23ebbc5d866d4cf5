"""Every Lua script the service runs inside Redis, and how each is called.

A script runs atomically: one round trip, and no state in between for a crash to lose. The scripts take their
keys from ``common.keys`` and every protocol constant they need (request id format, the poison reply) as
arguments built here from ``common.protocol``: nothing of the wire format is spelled in Lua but the two
identity fields (``request_id``, ``index``) and ``text`` that the recovery script reads from a message.

``Scripts`` binds them to one client, sync or async: a call returns what that client returns (a value, or an
awaitable for ``redis.asyncio``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from common.keys import Keys
from common.protocol import REQUEST_ID_CHARS, REQUEST_ID_LENGTH, ErrorCode, Reply, WorkError, encode_reply

# Refuse a push that would take the queue past its limit: the check and the push in one step, so concurrent
# producers cannot overshoot together.
# KEYS: requests.  ARGV: depth limit, items...  Returns the new length, or -1 (nothing pushed).
PUSH_IF_ROOM = """
local depth = redis.call('LLEN', KEYS[1])
if depth + #ARGV - 1 > tonumber(ARGV[1]) then return -1 end
return redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
"""

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
for i = #items, take + 1, -1 do items[i] = nil end
redis.call('LTRIM', KEYS[1], take, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
return items
"""

# Give a worker's in-flight messages back to the head of the queue, in their original order.
# With count_death = 1 (the worker died): each message's death count goes up; one that reached
# max_deliveries is not re-queued but dead-lettered with the reason, and its client answered with the poison
# reply (a template encoded by common.protocol, completed with the message's identity).
# KEYS: inflight:<worker>, requests, deaths, dead_letter, workers.
# ARGV: worker id, count_death (0/1), max_deliveries, reply key prefix, reply ttl, now (unix s),
#       request id pattern (Lua), poison reply template (msgpack).
# Returns {requeued, dead_lettered}.
RECOVER_INFLIGHT = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local died = ARGV[2] == '1'
local requeued, dead = 0, 0
for i = #items, 1, -1 do
  local raw = items[i]
  local digest = redis.sha1hex(raw)
  local deaths = 0
  if died then deaths = redis.call('HINCRBY', KEYS[3], digest, 1) end
  if died and deaths >= tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[3], digest)
    local reason = 'worker ' .. ARGV[1] .. ' was the ' .. deaths .. 'th worker to die holding this message'
    local at = tonumber(ARGV[6])
    local ok, item = pcall(cmsgpack.unpack, raw)
    local record
    if ok and type(item) == 'table' and type(item.request_id) == 'string' and string.match(item.request_id, ARGV[7])
        and type(item.index) == 'number' and item.index >= 0 and item.index % 1 == 0 then
      local reply = cmsgpack.unpack(ARGV[8])
      reply.request_id = item.request_id
      reply.index = item.index
      reply.error.message = 'set aside after ' .. deaths .. ' workers died processing it'
      local key = ARGV[4] .. item.request_id
      redis.call('RPUSH', key, cmsgpack.pack(reply))
      redis.call('EXPIRE', key, tonumber(ARGV[5]))
      record = cjson.encode({request_id = item.request_id, index = item.index, text = item.text, reason = reason,
        deaths = deaths, at = at})
    else
      record = cjson.encode({undecodable = true, bytes = #raw, sha1 = digest, reason = reason, deaths = deaths,
        at = at})
    end
    redis.call('RPUSH', KEYS[4], record)
    dead = dead + 1
  else
    redis.call('LPUSH', KEYS[2], raw)
    requeued = requeued + 1
  end
end
redis.call('DEL', KEYS[1])
if died then redis.call('SREM', KEYS[5], ARGV[1]) end
return {requeued, dead}
"""

# Which registered workers are alive: a worker is alive while its heartbeat key exists (membership in the registry
# alone proves nothing). One definition for the API's /readyz and /metrics and for the reaper, in one round trip.
# KEYS: workers.  ARGV: heartbeat key prefix.  Returns {worker id, 1 if alive else 0, ...}.
WORKER_LIVENESS = """
local out = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = member
  out[#out + 1] = redis.call('EXISTS', ARGV[1] .. member)
end
return out
"""

# Delete a lock only if it still holds our token (it may have expired and been taken by another worker).
# KEYS: lock.  ARGV: token.
RELEASE_LOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

# Lua patterns have no {n} repetition: the class is spelled out once per character.
REQUEST_ID_LUA_PATTERN = "^" + f"[{REQUEST_ID_CHARS}]" * REQUEST_ID_LENGTH + "$"


def digest(raw: bytes) -> str:
    """The id of a raw message in the deaths hash (the scripts' ``redis.sha1hex``)."""
    return hashlib.sha1(raw).hexdigest()


def liveness(raw: list[Any]) -> dict[str, bool]:
    """``WORKER_LIVENESS``'s answer as worker id -> alive, sorted by id."""
    pairs = zip(raw[::2], raw[1::2])
    return {member.decode(): bool(alive) for member, alive in sorted(pairs)}


def poison_reply_template() -> bytes:
    """The reply a dead-lettered message's client gets, encoded by the protocol; the recovery script fills in
    the message's request id, index and death count."""
    return encode_reply(Reply("0" * REQUEST_ID_LENGTH, 0, error=WorkError(ErrorCode.POISON, "")))


class Scripts:
    """The scripts bound to one client and one key prefix, with their arguments by name."""

    def __init__(self, client: redis.Redis | redis.asyncio.Redis, keys: Keys) -> None:
        self._keys = keys
        self._push_if_room = client.register_script(PUSH_IF_ROOM)
        self._pop_window = client.register_script(POP_WINDOW)
        self._recover_inflight = client.register_script(RECOVER_INFLIGHT)
        self._release_lock = client.register_script(RELEASE_LOCK)
        self._worker_liveness = client.register_script(WORKER_LIVENESS)

    def push_if_room(self, payloads: Sequence[bytes], max_depth: int) -> Any:
        """RPUSH ``payloads`` onto the request list unless that takes it past ``max_depth``: the new length,
        or -1 (nothing pushed)."""
        return self._push_if_room(keys=[self._keys.requests], args=[max_depth, *payloads])

    def pop_window(self, worker_id: str, max_items: int) -> Any:
        """Up to ``max_items`` messages from the head (a suspect only alone), recorded in-flight for the worker."""
        keys = [self._keys.requests, self._keys.inflight(worker_id), self._keys.deaths]
        return self._pop_window(keys=keys, args=[max_items])

    def recover_inflight(self, worker_id: str, *, died: bool, max_deliveries: int, reply_ttl_s: int,
                         now: float) -> Any:
        """Give ``worker_id``'s in-flight messages back to the queue's head: ``[requeued, dead_lettered]``."""
        keys = [self._keys.inflight(worker_id), self._keys.requests, self._keys.deaths, self._keys.dead_letter,
                self._keys.workers]
        args = [worker_id, 1 if died else 0, max_deliveries, self._keys.reply(""), reply_ttl_s, f"{now:.3f}",
                REQUEST_ID_LUA_PATTERN, poison_reply_template()]
        return self._recover_inflight(keys=keys, args=args)

    def worker_liveness(self) -> Any:
        """Registered workers and whether each is alive (raw: parse it with ``liveness``)."""
        return self._worker_liveness(keys=[self._keys.workers], args=[self._keys.heartbeat("")])

    def release_lock(self, key: str, token: str) -> Any:
        """Delete ``key`` if it still holds ``token``: 1 if deleted."""
        return self._release_lock(keys=[key], args=[token])
