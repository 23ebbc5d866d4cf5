import pytest

from api.admission import Admission
from api.errors import ErrorKind, ServiceError
from tests.unit.api_harness import settings


def admission(**overrides):
    # 40 texts and 4,096 bytes of queue; half of it per client. (Admission is given each text's characters.)
    base = dict(max_queue_depth=40, max_batch_texts=5, max_text_chars=50, max_queue_bytes=4096,
                max_client_share=0.5, max_in_flight=10)
    return Admission(settings(**{**base, **overrides}))


def refused(gate, client, texts):
    with pytest.raises(ServiceError) as info:
        with gate.admit(client, texts):
            pass
    assert info.value.kind == ErrorKind.OVERLOADED and info.value.retry_after_s is not None
    return info.value.message


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


def test_the_share_counts_characters_too():
    gate = admission(max_queue_depth=100)  # room for 50 texts per client: characters are the limit here
    long = [100] * 5
    with gate.admit("c", long), gate.admit("c", long), gate.admit("c", long), gate.admit("c", long):
        assert "(2000 characters) waiting" in refused(gate, "c", [100])  # 2,000 + 100 > 2,048
        with gate.admit("c", [48]):  # exactly at the share: 2,048
            pass


def test_the_process_request_slots_are_shared_by_all_clients():
    gate = admission(max_in_flight=2)
    with gate.admit("a", [1]), gate.admit("b", [1]):
        assert "already serving 2 requests" in refused(gate, "c", [1])


def test_a_share_of_one_means_no_per_client_limit():
    gate = admission(max_client_share=1.0, max_queue_depth=10, max_batch_texts=5)
    with gate.admit("c", [1] * 5), gate.admit("c", [1] * 5):
        pass
