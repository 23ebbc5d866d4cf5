
import msgpack
import pytest

from common.options import Options
from common.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    Prediction,
    ProtocolError,
    Reply,
    WorkError,
    WorkItem,
    decode_cached,
    decode_item,
    decode_reply,
    encode_cached,
    encode_item,
    encode_reply,
    new_request_id,
)

RID = new_request_id()
V = PROTOCOL_VERSION


@pytest.mark.parametrize("options", [Options(), Options(top_k=None, function="none", truncate=False,
                                                          truncation_side="left"), Options(top_k=3)],
                         ids=["defaults", "every-option", "top-k"])
def test_work_item_round_trip_keeps_every_field(options):
    item = WorkItem(RID, 3, "héllo 🌍 world", 1_800_000_000.25, 1_799_999_990.5, "a pair", options)
    assert decode_item(encode_item(item)) == item


def test_a_work_items_trace_context_travels_only_when_set():
    traced = WorkItem(RID, 0, "x", 2.0, 1.0, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert decode_item(encode_item(traced)) == traced
    assert "traceparent" not in msgpack.unpackb(encode_item(WorkItem(RID, 0, "x", 2.0, 1.0)))
    raw = msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": 2.0, "enqueued_at": 1.0,
                         "traceparent": 7})
    with pytest.raises(ProtocolError, match="'traceparent' must be str"):
        decode_item(raw)


def test_a_clients_request_id_travels_only_when_set_and_readers_ignore_fields_they_do_not_know():
    tagged = WorkItem(RID, 0, "x", 2.0, 1.0, client_request_id="order-42:retry.1")
    assert decode_item(encode_item(tagged)) == tagged
    assert "client_request_id" not in msgpack.unpackb(encode_item(WorkItem(RID, 0, "x", 2.0, 1.0)))
    # A worker of a version without the field reads the item as if it were absent, as this one reads a field of a
    # later version: decoding takes the fields it knows and nothing else.
    fields = {"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": 2.0, "enqueued_at": 1.0}
    assert decode_item(msgpack.packb({**fields, "a_later_field": [1, 2]})) == WorkItem(RID, 0, "x", 2.0, 1.0)
    with pytest.raises(ProtocolError, match="'client_request_id' must be str"):
        decode_item(msgpack.packb({**fields, "client_request_id": 7}))


def test_reply_round_trips_ranked_labels_and_error():
    ok = Reply(RID, 0, predictions=[Prediction("POSITIVE", 0.99), Prediction("NEGATIVE", -3.5)], queue_ms=1.5,
               inference_ms=7.25, model="m1")
    failed = Reply(RID, 1, error=WorkError(ErrorCode.INFERENCE_FAILED, "boom"))
    assert decode_reply(encode_reply(ok)) == ok
    assert decode_reply(encode_reply(failed)) == failed


def test_a_cache_entry_round_trips_its_ranked_labels():
    ranked = [Prediction("joy", 0.7), Prediction("anger", 0.2), Prediction("fear", 0.1)]
    assert decode_cached(encode_cached(ranked)) == ranked


def test_messages_are_named_msgpack_maps_with_a_version():
    data = msgpack.unpackb(encode_item(WorkItem(RID, 0, "x", 2.0, 1.0)))
    assert data == {"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": 2.0,
                    "enqueued_at": 1.0}  # default options and no pair: nothing more on the wire
    data = msgpack.unpackb(encode_item(WorkItem(RID, 0, "x", 2.0, 1.0, "y", Options(top_k=2))))
    assert data["text_pair"] == "y"
    assert data["options"] == {"top_k": 2, "function": None, "truncate": True, "truncation_side": "right"}


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1garbage",
        b"",
        msgpack.packb([1, 2, 3]),
        msgpack.packb("just a string"),
        msgpack.packb({"v": 1}),
        msgpack.packb({"v": V, "request_id": "not-hex", "index": 0, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}),
        msgpack.packb({"v": V, "request_id": RID, "index": -1, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}),
        msgpack.packb({"v": V, "request_id": RID, "index": True, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}),
        msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": 5, "deadline": 1.0, "enqueued_at": 1.0}),
        msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": "soon", "enqueued_at": 1.0}),
        msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": float("nan"), "enqueued_at": 1.0}),
        msgpack.packb({"v": V + 1, "request_id": RID, "index": 0, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}),
        msgpack.packb({1: "int keys"}),
        msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": b"bytes", "deadline": 1.0, "enqueued_at": 1.0}),
        b"\x00" * (MAX_MESSAGE_BYTES + 1),
        "a str, not bytes",
    ],
    ids=lambda raw: f"{len(raw)}-bytes",  # stable: the request id inside is random
)
def test_garbage_is_a_protocol_error_never_a_crash(raw):
    with pytest.raises(ProtocolError):
        decode_item(raw)


def test_broken_message_with_readable_identity_keeps_it_for_an_error_reply():
    raw = msgpack.packb({"v": V, "request_id": RID, "index": 4, "text": None, "deadline": 1.0, "enqueued_at": 1.0})
    with pytest.raises(ProtocolError) as info:
        decode_item(raw)
    assert (info.value.request_id, info.value.index) == (RID, 4)


def test_deeply_nested_or_huge_containers_are_refused():
    nested = msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": list(range(1000)), "deadline": 1.0,
                            "enqueued_at": 1.0})
    with pytest.raises(ProtocolError):
        decode_item(nested)


def test_reply_without_prediction_or_error_is_refused():
    raw = msgpack.packb({"v": V, "request_id": RID, "index": 0, "queue_ms": 0.0, "inference_ms": 0.0})
    with pytest.raises(ProtocolError):
        decode_reply(raw)


@pytest.mark.parametrize("request_id", [RID.upper(), RID + "\n", RID[:-1], RID + "0", " " + RID[1:]],
                         ids=["upper-case", "newline", "short", "long", "leading-space"])
def test_a_request_id_is_exactly_32_lowercase_hex_characters(request_id):
    raw = msgpack.packb({"v": V, "request_id": request_id, "index": 0, "text": "x", "deadline": 1.0,
                         "enqueued_at": 1.0})
    with pytest.raises(ProtocolError) as info:
        decode_item(raw)
    assert info.value.request_id is None  # not even readable enough to be answered


def test_a_protocol_error_says_which_field_is_wrong_and_why():
    raw = msgpack.packb({"v": V, "request_id": RID, "index": 0, "text": "x", "deadline": "soon", "enqueued_at": 1.0})
    with pytest.raises(ProtocolError) as info:
        decode_item(raw)
    assert str(info.value) == "field 'deadline' must be int or float, got str"
    assert (info.value.request_id, info.value.index) == (RID, 0)


def test_a_work_items_message_takes_at_most_the_settings_overhead_beyond_its_texts_bytes():
    from api.settings import MESSAGE_OVERHEAD_BYTES

    text = "é" * 500  # 2 bytes each in UTF-8
    options = Options(top_k=None, function="softmax", truncate=False, truncation_side="right")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    longest_client_id = "x" * 64  # api/access.py accepts up to 64 characters
    raw = encode_item(WorkItem(new_request_id(), 4095, text, 1.7e9 + 0.123456, 1.7e9 + 0.654321, text, options,
                               traceparent, longest_client_id))
    assert len(raw) - 2 * len(text.encode()) <= MESSAGE_OVERHEAD_BYTES
