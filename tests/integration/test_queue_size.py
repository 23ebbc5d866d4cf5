"""The queue's size in bytes, kept by the push, pop and recovery scripts (admission by size), on a real Redis."""

from common.protocol import WorkItem, encode_item, new_request_id
from common.scripts import REFUSAL_MARKER, REFUSAL_MARKER_TTL_MS, RecoveryMode, Scripts
from tests.integration.work import recovery, worker_queue

RID = new_request_id()  # the request whose reply key a refusal marks


def messages(*texts):
    rid = new_request_id()
    return [encode_item(WorkItem(rid, i, t, 1e12, 0.0)) for i, t in enumerate(texts)]


def queued(client, keys):
    return int(client.get(keys.queued_bytes) or 0)


def test_pushes_count_their_bytes_and_are_refused_past_the_limit(setup):
    _, client, keys = setup
    scripts = Scripts(client, keys)
    first, second = messages("a" * 300), messages("b" * 300, "c" * 300)
    limit = len(first[0]) + sum(map(len, second)) - 1  # one byte short of all three
    assert scripts.push_if_room(RID, first, 100, limit) == 1
    assert client.exists(keys.reply(RID)) == 0  # a push leaves the reply key alone
    assert scripts.push_if_room(RID, second, 100, limit) == -2  # too many bytes: nothing pushed
    assert client.llen(keys.requests) == 1 and queued(client, keys) == len(first[0])
    assert scripts.push_if_room(RID, second, 100, limit + 1) == 3  # exactly at the limit
    assert scripts.push_if_room(RID, messages("d"), 3, 10**9) == -1  # the text limit still holds


def test_a_refusal_leaves_its_marker_on_the_reply_key_briefly(setup):
    """So that a wait pipelined after the push ends at once (api/gateway.py), and the key goes away on its own."""
    _, client, keys = setup
    scripts = Scripts(client, keys)
    for refused_by in ({"max_depth": 0, "max_bytes": 10**6}, {"max_depth": 100, "max_bytes": 1}):
        assert scripts.push_if_room(RID, messages("a"), **refused_by) < 0
        assert client.lrange(keys.reply(RID), 0, -1) == [REFUSAL_MARKER]
        assert 0 < client.pttl(keys.reply(RID)) <= REFUSAL_MARKER_TTL_MS
        client.delete(keys.reply(RID))
    assert client.llen(keys.requests) == 0 and queued(client, keys) == 0


def test_pops_give_bytes_back_recovery_takes_them_again_and_an_empty_queue_resets_a_drift(setup):
    _, client, keys = setup
    scripts = Scripts(client, keys)
    batch = messages("one", "two", "three")
    scripts.push_if_room(RID, batch, 100, 10**6)
    queue = worker_queue(client, keys, "w1")
    assert queue.pop(2, block_s=0, lease_s=30).messages == batch[:2]
    assert queued(client, keys) == len(batch[2])
    recovery(client, keys).recover("w1", RecoveryMode.RELEASE)  # the two come back to the head
    assert queued(client, keys) == sum(map(len, batch))
    client.rpush(keys.requests, b"pushed by hand, never counted")
    while queue.pop(8, block_s=0, lease_s=30):
        pass
    assert client.llen(keys.requests) == 0 and queued(client, keys) == 0  # no negative drift left behind
    client.set(keys.queued_bytes, 10**9)  # a drift the other way (messages removed by hand)
    assert scripts.push_if_room(RID, messages("fresh"), 100, 10**6) == 1  # the empty queue's counter starts again
