"""Every way a message can be unreadable, and exactly what the protocol says about it: the reason (logged by
workers, sent back in malformed-message replies) and the identity it could still read (so that the sender can be
answered)."""

import msgpack
import pytest

from common.protocol import MAX_MESSAGE_BYTES, ProtocolError, decode_item, decode_reply, new_request_id

RID = new_request_id()
ITEM = {"v": 1, "request_id": RID, "index": 3, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}
REPLY = {"v": 1, "request_id": RID, "index": 3, "label": "POSITIVE", "score": 0.9, "queue_ms": 1.0, "inference_ms": 2.0}


def pack(fields: dict, **changes) -> bytes:
    return msgpack.packb({k: v for k, v in {**fields, **changes}.items() if v is not ...})


ITEM_CASES = {
    "not-bytes": ("a str", "message must be bytes, got str", None, None),
    "too-large": (b"\x00" * (MAX_MESSAGE_BYTES + 1),
                  f"message of {MAX_MESSAGE_BYTES + 1} bytes exceeds {MAX_MESSAGE_BYTES}", None, None),
    "at-the-size-limit": (b"\xc0" * MAX_MESSAGE_BYTES, "not a msgpack message: ExtraData", None, None),
    "not-msgpack": (b"\xc1", "not a msgpack message: FormatError", None, None),
    "a-list": (msgpack.packb([1, 2]), "message must be a map, got list", None, None),
    "int-keys": (msgpack.packb({1: "x"}), "not a msgpack message: ValueError", None, None),
    "binary-text": (msgpack.packb({**ITEM, "text": b"x"}, use_bin_type=True), "not a msgpack message: ValueError",
                    None, None),
    "other-version": (pack(ITEM, v=2), "unsupported protocol version 2", RID, 3),
    "no-version": (pack(ITEM, v=...), "unsupported protocol version None", RID, 3),
    "bad-request-id": (pack(ITEM, request_id=RID.upper()), "field 'request_id' must be 32 lowercase hex characters",
                       None, 3),
    "bad-index": (pack(ITEM, index=-1), "field 'index' must be a non-negative integer", RID, None),
    "bool-index": (pack(ITEM, index=True), "field 'index' must be a non-negative integer", RID, None),
    "text-not-str": (pack(ITEM, text=5), "field 'text' must be str, got int", RID, 3),
    "deadline-not-a-number": (pack(ITEM, deadline="soon"), "field 'deadline' must be int or float, got str", RID, 3),
    "deadline-bool": (pack(ITEM, deadline=True), "field 'deadline' must be int or float, got bool", RID, 3),
    "deadline-nan": (pack(ITEM, deadline=float("nan")), "field 'deadline' must be finite", RID, 3),
    "no-enqueued-at": (pack(ITEM, enqueued_at=...), "field 'enqueued_at' must be int or float, got NoneType", RID, 3),
}

REPLY_CASES = {
    "no-index": (pack(REPLY, index=...), "reply lacks a valid request id or index", RID, None),
    "bad-request-id": (pack(REPLY, request_id="nope"), "reply lacks a valid request id or index", None, 3),
    "error-code-not-str": (pack(REPLY, error={"code": 1, "message": "m"}),
                           "field 'error' must be a map with string 'code' and 'message'", RID, 3),
    "error-message-not-str": (pack(REPLY, error={"code": "c", "message": None}),
                              "field 'error' must be a map with string 'code' and 'message'", RID, 3),
    "error-not-a-map": (pack(REPLY, error="oops"), "field 'error' must be a map with string 'code' and 'message'",
                        RID, 3),
    "score-inf": (pack(REPLY, score=float("inf")), "field 'score' must be finite", RID, 3),
    "no-label": (pack(REPLY, label=...), "field 'label' must be str, got NoneType", RID, 3),
    "queue-ms-not-a-number": (pack(REPLY, queue_ms="1"), "field 'queue_ms' must be int or float, got str", RID, 3),
    "no-timing": (pack(REPLY, inference_ms=...), "field 'inference_ms' must be int or float, got NoneType", RID, 3),
}


CASES = {**{f"item-{name}": (decode_item, *case) for name, case in ITEM_CASES.items()},
         **{f"reply-{name}": (decode_reply, *case) for name, case in REPLY_CASES.items()}}


@pytest.mark.parametrize("case", CASES)
def test_unreadable_messages(case):
    decode, raw, reason, request_id, index = CASES[case]
    with pytest.raises(ProtocolError) as info:
        decode(raw)
    assert (str(info.value), info.value.request_id, info.value.index) == (reason, request_id, index)


def test_well_formed_messages_decode():
    assert decode_item(pack(ITEM)).index == 3 and decode_reply(pack(REPLY)).prediction.score == 0.9
