"""Every way a message can be unreadable, and exactly what the protocol says about it: the reason (logged by
workers, sent back in malformed-message replies) and the identity it could still read (so that the sender can be
answered)."""

import msgpack
import pytest

from common.protocol import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    ProtocolError,
    decode_cached,
    decode_item,
    decode_reply,
    new_request_id,
)

RID = new_request_id()
V = PROTOCOL_VERSION
ITEM = {"v": V, "request_id": RID, "index": 3, "text": "x", "deadline": 1.0, "enqueued_at": 1.0}
OPTIONS = {"top_k": None, "function": "sigmoid", "truncate": False, "truncation_side": "left"}
REPLY = {"v": V, "request_id": RID, "index": 3, "predictions": [{"label": "POSITIVE", "score": 0.9}], "queue_ms": 1.0,
         "inference_ms": 2.0}


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
    "older-version": (pack(ITEM, v=V - 1), f"unsupported protocol version {V - 1}", RID, 3),
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
    "pair-not-str": (pack(ITEM, text_pair=7), "field 'text_pair' must be str, got int", RID, 3),
    "options-not-a-map": (pack(ITEM, options=[1]),
                          "field 'options' must be a map of top_k, function, truncate, truncation_side", RID, 3),
    "options-missing-one": (pack(ITEM, options={"function": None}),
                            "field 'options' must be a map of top_k, function, truncate, truncation_side", RID, 3),
    "top-k-zero": (pack(ITEM, options={**OPTIONS, "top_k": 0}),
                   "field 'options': top_k must be a positive integer or None, got 0", RID, 3),
    "top-k-bool": (pack(ITEM, options={**OPTIONS, "top_k": True}),
                   "field 'options': top_k must be a positive integer or None, got True", RID, 3),
    "unknown-function": (pack(ITEM, options={**OPTIONS, "function": "relu"}),
                         "field 'options': function must be one of softmax, sigmoid, none or None, got 'relu'", RID, 3),
    "truncate-not-bool": (pack(ITEM, options={**OPTIONS, "truncate": 1}),
                          "field 'options': truncate must be a boolean, got 1", RID, 3),
    "unknown-side": (pack(ITEM, options={**OPTIONS, "truncation_side": "middle"}),
                     "field 'options': truncation_side must be one of right, left, got 'middle'", RID, 3),
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
    "score-inf": (pack(REPLY, predictions=[{"label": "P", "score": float("inf")}]), "field 'score' must be finite",
                  RID, 3),
    "no-label": (pack(REPLY, predictions=[{"score": 0.5}]), "field 'label' must be str, got NoneType", RID, 3),
    "no-predictions": (pack(REPLY, predictions=...), "ranked labels must be a non-empty list", RID, 3),
    "empty-predictions": (pack(REPLY, predictions=[]), "ranked labels must be a non-empty list", RID, 3),
    "prediction-not-a-map": (pack(REPLY, predictions=["P"]), "a ranked label must be a map of label and score", RID,
                             3),
    "model-not-str": (pack(REPLY, model=5), "field 'model' must be str, got int", RID, 3),
    "older-version": (pack(REPLY, v=V - 1), f"unsupported protocol version {V - 1}", RID, 3),
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
    assert decode_item(pack(ITEM)).index == 3 and decode_reply(pack(REPLY)).predictions[0].score == 0.9
    item = decode_item(pack(ITEM, text_pair="y", options=OPTIONS))
    assert (item.text_pair, item.options.top_k, item.options.function, item.options.truncate,
            item.options.truncation_side) == ("y", None, "sigmoid", False, "left")


def test_an_error_reply_of_another_version_is_read_so_a_version_mismatch_is_told_at_once():
    """What a worker of protocol 1 answers an item it cannot read (its reply format for errors is unchanged)."""
    older = {"v": V - 1, "request_id": RID, "index": 0, "queue_ms": 0.0, "inference_ms": 0.0,
             "error": {"code": "malformed_message", "message": "unsupported protocol version 2"}}
    reply = decode_reply(pack(older))
    assert (reply.error.code, reply.predictions) == ("malformed_message", None)


@pytest.mark.parametrize("raw", [b"\xc1", msgpack.packb({"v": V - 1, "predictions": [{"label": "P", "score": 1}]}),
                                 msgpack.packb({"v": V, "predictions": []})], ids=["garbage", "older", "empty"])
def test_an_unreadable_cache_entry_is_a_protocol_error(raw):
    with pytest.raises(ProtocolError):
        decode_cached(raw)
