import pytest

from api.admission import Admission
from api.errors import ErrorKind, ServiceError
from api.settings import ApiSettings
from common.options import Query
from common.protocol import WorkItem, encode_item, new_request_id
from tests.unit.api_harness import KEYS, settings


def admission(**overrides):
    # 40 texts and 8,192 bytes of queue; half of it per client. (Admission is given each work item's bytes.)
    base = dict(max_queue_depth=40, max_batch_texts=5, max_text_chars=50, max_queue_bytes=8192,
                max_client_share=0.5, max_in_flight=10)
    return Admission(settings(**{**base, **overrides}))


def refused(gate, client, sizes):
    with pytest.raises(ServiceError) as info:
        with gate.admit(client, sizes):
            pass
    assert info.value.kind == ErrorKind.OVERLOADED and info.value.retry_after_s is not None
    return info.value.message


def sizes_of(texts: list[str]) -> list[int]:
    """The bytes the queue would count for these texts: their work items' messages, as the gateway encodes them."""
    request_id = new_request_id()
    return [len(encode_item(WorkItem(request_id, i, Query(text).text, 2e9, 1e9))) for i, text in enumerate(texts)]


def test_one_client_holds_at_most_its_share_of_the_queue_others_are_not_affected():
    gate = admission()
    with gate.admit("10.0.0.1", [1] * 5), gate.admit("10.0.0.1", [1] * 5), gate.admit("10.0.0.1", [1] * 5), \
            gate.admit("10.0.0.1", [1] * 5):
        assert "this client already has 20 texts" in refused(gate, "10.0.0.1", [1])  # 20 of 40 = its half
        with gate.admit("10.0.0.2", [1] * 5):  # another client is served
            assert gate.in_flight == 5
    assert gate.in_flight == 0
    with gate.admit("10.0.0.1", [1] * 5):  # released when its requests ended
        pass


def test_the_share_counts_bytes_too():
    gate = admission(max_queue_depth=100)  # room for 50 texts per client: bytes are the limit here
    long = [200] * 5
    with gate.admit("c", long), gate.admit("c", long), gate.admit("c", long), gate.admit("c", long):
        assert "(4000 bytes) waiting" in refused(gate, "c", [100])  # 4,000 + 100 > 4,096
        with gate.admit("c", [96]):  # exactly at the share: 4,096
            pass


def test_with_default_settings_a_client_of_4_byte_characters_holds_at_most_its_share_of_the_queue_bytes():
    """The share counts what the queue counts: a full-size call of emoji weighs 4 bytes a character, not 1."""
    s = ApiSettings(key_prefix=KEYS.prefix)
    gate = Admission(s)
    emoji = sizes_of(["\U0001F600" * s.max_text_chars] * s.max_batch_texts)
    held = 0
    with gate.admit("greedy", emoji):
        held += sum(emoji)
        with gate.admit("greedy", emoji):  # two full calls of 8,000-byte texts: ~1 MiB, its whole share
            held += sum(emoji)
            assert "this client already has" in refused(gate, "greedy", emoji)
            assert held <= s.max_client_share * s.max_queue_bytes
            with gate.admit("other", emoji), gate.admit("other", emoji):  # the other half is the others'
                pass


def test_with_default_settings_one_client_holds_at_most_its_share_of_the_request_slots():
    s = ApiSettings(key_prefix=KEYS.prefix)
    gate = Admission(s)
    held = []
    for _ in range(s.max_in_flight):  # 512 one-text requests from one client
        try:
            held.append(gate.admit("greedy", [100]))
            held[-1].__enter__()
        except ServiceError as exc:
            assert "this client already has 256 requests in flight" in exc.message
            held.pop()
    assert len(held) == s.max_client_share * s.max_in_flight
    with gate.admit("other", [100]):  # the other slots are the others'
        pass
    for hold in held:
        hold.__exit__(None, None, None)
    assert gate.in_flight == 0


def test_a_share_of_a_few_slots_is_one_slot_at_least():
    gate = admission(max_in_flight=1)  # 0.5 of 1 slot: still one
    with gate.admit("a", [1]):
        assert "already serving 1 requests" in refused(gate, "b", [1])
    with gate.admit("b", [1]):
        pass


def test_the_process_request_slots_are_shared_by_all_clients():
    gate = admission(max_in_flight=2)
    with gate.admit("a", [1]), gate.admit("b", [1]):
        assert "already serving 2 requests" in refused(gate, "c", [1])


def test_a_share_of_one_means_no_per_client_limit():
    gate = admission(max_client_share=1.0, max_queue_depth=10, max_batch_texts=5, max_in_flight=3)
    with gate.admit("c", [1] * 5), gate.admit("c", [1] * 4), gate.admit("c", [1]):  # all 10 texts, all 3 slots
        assert "already serving 3 requests" in refused(gate, "c", [1])
