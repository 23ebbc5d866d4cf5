"""The wire protocol between API producers and model workers: message types and their msgpack encoding.

One work item is one text (or text pair) with the options it was asked with (common/options.py). A batch
request of N texts becomes N items that share a request id and reply key, so every text counts as one unit
toward a worker's batch limits and the texts of one request can be served by several batches or workers. A reply
carries the text's ranked labels and the fingerprint of the model that computed them. Messages are msgpack maps
with named fields and a version, decoded defensively: anything on the queue may be garbage.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgpack

from common.options import DEFAULT_OPTIONS, Options

# 2: items carry a text pair and options, replies ranked labels and the model's fingerprint. A worker of another
# version answers an item it cannot read as malformed (the client gets a 500 naming the cause), never wrongly.
PROTOCOL_VERSION = 2
# Most labels one reply may carry (top_k=None answers every label of the model).
MAX_LABELS = 16_384

# Caps for decoding untrusted bytes: far above anything the API enqueues, low enough that a hostile
# message cannot make a worker allocate gigabytes.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_UNPACK_LIMITS = dict(
    max_str_len=MAX_MESSAGE_BYTES,
    max_bin_len=0,
    max_array_len=MAX_LABELS,
    max_map_len=64,
    max_ext_len=0,
)
# A request id is a uuid4 in lowercase hex. The Lua scripts check it too: common/scripts.py builds their
# pattern from these two constants.
REQUEST_ID_LENGTH = 32
REQUEST_ID_CHARS = "0-9a-f"
_REQUEST_ID_RE = re.compile(f"[{REQUEST_ID_CHARS}]{{{REQUEST_ID_LENGTH}}}")


class ProtocolError(ValueError):
    """A message could not be decoded. ``request_id``/``index`` are set when they could be read,
    so that the sender can still be told what went wrong."""

    def __init__(self, message: str, request_id: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.index = index


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One text to classify, as the API enqueues it (a ``common.options.QueryLike``)."""

    request_id: str
    index: int  # position of the text in its request (0 for single predictions)
    text: str
    deadline: float  # unix seconds; after this the API has given up and the item is not worth running
    enqueued_at: float  # unix seconds, the producer's clock
    text_pair: str | None = None  # the second text of a pair (tokenized as one sequence with the first)
    options: Options = DEFAULT_OPTIONS
    # W3C trace context of the API's request span, when tracing is on (common/tracing.py): the worker's pass span
    # links to it. Absent otherwise; a worker that does not trace ignores it.
    traceparent: str | None = None
    # The client's X-Request-ID, if it sent a well-formed one (api/access.py): what the worker's logs name the request
    # by, as the API's do. Absent otherwise; a worker that does not know it ignores it. Never a key (request_id is).
    client_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class WorkError:
    code: str  # one of ErrorCode
    message: str


class ErrorCode:
    """Codes a worker may answer with instead of a prediction."""

    MALFORMED = "malformed_message"
    INFERENCE_FAILED = "inference_failed"
    INVALID_INPUT = "invalid_input"  # the model cannot answer it as asked (too long untruncated, top_k too high)
    POISON = "poison_message"  # sent by the recovery script (common/scripts.py) from a template encoded here


@dataclass(frozen=True, slots=True)
class Reply:
    """A worker's answer for one work item: its ranked labels or an error, plus where the time went."""

    request_id: str
    index: int
    predictions: list[Prediction] | None = None  # the item's top_k labels, best first
    error: WorkError | None = None
    queue_ms: float = 0.0  # enqueue -> picked up by the worker
    inference_ms: float = 0.0  # the forward pass (tokenization included) of the batch that held it
    model: str = ""  # fingerprint of the model that answered (common/model_card.py): the response cache's key


def _pack(fields: dict[str, Any]) -> bytes:
    return msgpack.packb({"v": PROTOCOL_VERSION, **fields}, use_bin_type=True)


def _unpack(raw: bytes, *, any_version: bool = False) -> dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray)):
        raise ProtocolError(f"message must be bytes, got {type(raw).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        data = msgpack.unpackb(raw, raw=False, strict_map_key=True, **_UNPACK_LIMITS)
    except Exception as exc:  # msgpack raises many types (ExtraData, ValueError, UnicodeDecodeError, ...)
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a map, got {type(data).__name__}")
    request_id, index = _peek_identity(data)
    if data.get("v") != PROTOCOL_VERSION and not any_version:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}", request_id, index)
    return data


def _peek_identity(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """Read the id and index if they are well formed, so a broken message can still be answered."""
    request_id = data.get("request_id")
    index = data.get("index")
    valid_id = request_id if isinstance(request_id, str) and _REQUEST_ID_RE.fullmatch(request_id) else None
    valid_index = index if type(index) is int and index >= 0 else None
    return valid_id, valid_index


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...], ident: tuple[str | None, int | None]) -> Any:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} must be {_kind_name(kind)}, got {type(value).__name__}", *ident)
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"field {name!r} must be finite", *ident)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def encode_item(item: WorkItem) -> bytes:
    fields: dict[str, Any] = {
        "request_id": item.request_id,
        "index": item.index,
        "text": item.text,
        "deadline": item.deadline,
        "enqueued_at": item.enqueued_at,
    }
    if item.text_pair is not None:
        fields["text_pair"] = item.text_pair
    if item.options is not DEFAULT_OPTIONS and item.options != DEFAULT_OPTIONS:  # the common case stays as small
        o = item.options
        fields["options"] = {"top_k": o.top_k, "function": o.function, "truncate": o.truncate,
                             "truncation_side": o.truncation_side}
    if item.traceparent is not None:
        fields["traceparent"] = item.traceparent
    if item.client_request_id is not None:
        fields["client_request_id"] = item.client_request_id
    return _pack(fields)


def decode_item(raw: bytes) -> WorkItem:
    data = _unpack(raw)
    ident = _peek_identity(data)
    if ident[0] is None:
        raise ProtocolError("field 'request_id' must be 32 lowercase hex characters", *ident)
    if ident[1] is None:
        raise ProtocolError("field 'index' must be a non-negative integer", *ident)
    pair, traceparent = _optional_str(data, "text_pair", ident), _optional_str(data, "traceparent", ident)
    return WorkItem(
        request_id=ident[0],
        index=ident[1],
        text=_field(data, "text", str, ident),
        deadline=float(_field(data, "deadline", (int, float), ident)),
        enqueued_at=float(_field(data, "enqueued_at", (int, float), ident)),
        text_pair=pair,
        options=_options(data.get("options"), ident),
        traceparent=traceparent,
        client_request_id=_optional_str(data, "client_request_id", ident),
    )


def _optional_str(data: dict[str, Any], name: str, ident: tuple[str | None, int | None]) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"field {name!r} must be str, got {type(value).__name__}", *ident)
    return value


def _options(raw: Any, ident: tuple[str | None, int | None]) -> Options:
    if raw is None:
        return DEFAULT_OPTIONS
    if not isinstance(raw, dict) or set(raw) != {"top_k", "function", "truncate", "truncation_side"}:
        raise ProtocolError("field 'options' must be a map of top_k, function, truncate, truncation_side", *ident)
    try:
        return Options(**raw)
    except ValueError as exc:  # Options checks every value
        raise ProtocolError(f"field 'options': {exc}", *ident) from None


def _encode_ranked(predictions: list[Prediction]) -> list[dict[str, Any]]:
    """Ranked labels as msgpack carries them (in replies and in response-cache entries)."""
    return [{"label": p.label, "score": p.score} for p in predictions]


def _decode_ranked(raw: Any, ident: tuple[str | None, int | None] = (None, None)) -> list[Prediction]:
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("ranked labels must be a non-empty list", *ident)
    ranked = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise ProtocolError("a ranked label must be a map of label and score", *ident)
        ranked.append(Prediction(label=_field(entry, "label", str, ident),
                                 score=float(_field(entry, "score", (int, float), ident))))
    return ranked


def encode_reply(reply: Reply) -> bytes:
    fields: dict[str, Any] = {
        "request_id": reply.request_id,
        "index": reply.index,
        "queue_ms": reply.queue_ms,
        "inference_ms": reply.inference_ms,
    }
    if reply.model:
        fields["model"] = reply.model
    if reply.predictions is not None:
        fields["predictions"] = _encode_ranked(reply.predictions)
    if reply.error is not None:
        fields["error"] = {"code": reply.error.code, "message": reply.error.message}
    return _pack(fields)


def decode_reply(raw: bytes) -> Reply:
    """A worker's reply. An error reply of another version is read too (its fields have not changed): a worker of
    another version answers our items as malformed, and the client is told so at once instead of at its deadline."""
    data = _unpack(raw, any_version=True)
    ident = _peek_identity(data)
    if data.get("v") != PROTOCOL_VERSION and "error" not in data:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}", *ident)
    if ident[0] is None or ident[1] is None:
        raise ProtocolError("reply lacks a valid request id or index", *ident)
    error = None
    predictions = None
    if "error" in data:
        err = data["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
            raise ProtocolError("field 'error' must be a map with string 'code' and 'message'", *ident)
        error = WorkError(code=err["code"], message=err["message"])
    else:
        predictions = _decode_ranked(data.get("predictions"), ident)
    model = data.get("model", "")
    if not isinstance(model, str):
        raise ProtocolError(f"field 'model' must be str, got {type(model).__name__}", *ident)
    return Reply(
        request_id=ident[0],
        index=ident[1],
        predictions=predictions,
        error=error,
        model=model,
        queue_ms=float(_field(data, "queue_ms", (int, float), ident)),
        inference_ms=float(_field(data, "inference_ms", (int, float), ident)),
    )


def encode_cached(ranked: list[Prediction]) -> bytes:
    """A response-cache entry (api/cache.py): one text's ranked labels."""
    return _pack({"predictions": _encode_ranked(ranked)})


def decode_cached(raw: bytes) -> list[Prediction]:
    """Raises ProtocolError for anything but an entry of this version (an older one is a miss, then rewritten)."""
    return _decode_ranked(_unpack(raw).get("predictions"))
