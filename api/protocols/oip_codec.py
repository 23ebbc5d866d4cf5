"""The Open Inference Protocol's (KServe v2) infer messages, as tritonclient, the KServe SDK and Triton's
perf_analyzer send and read them: a JSON request, optionally followed by binary tensor data (Triton's
``binary_tensor_data`` extension: ``Inference-Header-Content-Length`` says where the JSON ends), and the answer in
the same two forms. No HTTP in here: api/protocols/oip.py holds the routes.

The model takes one BYTES input, ``text`` (any shape: one text per element), and optionally ``text_pair`` of the
same shape; it answers ``label`` (BYTES) and ``score`` (FP32), one per text — or, with the request parameter
``top_k``, that many per text (shape ``[..., top_k]``), best first.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, TypeAdapter, ValidationError, create_model

from api.errors import ErrorKind, ServiceError, cut, shown
from api.protocols.fields import check_json_values, integer
from common.options import FUNCTIONS, MAX_TOP_K, Options, Query
from common.protocol import Prediction

TEXT, PAIR = "text", "text_pair"
LABEL, SCORE = "label", "score"
OUTPUTS = {LABEL: "BYTES", SCORE: "FP32"}
HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")  # a BYTES element's length prefix in binary tensor data
INT64_MAX = 2**63 - 1  # the protocol's shapes are int64: the bound of every dimension (and of a size)


class TensorParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data_size: integer(ge=0, le=INT64_MAX) | None = Field(None, description=(  # type: ignore[valid-type]
        "Bytes of this tensor's binary data, sent after the JSON (binary tensor data extension)."))


class OutputParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    binary_data: StrictBool = Field(False, description="Answer this output as binary tensor data.")


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["label", "score"]
    parameters: OutputParameters | None = None


class RequestParameters(BaseModel):
    model_config = ConfigDict(extra="allow")  # Triton's own (priority, timeout, sequence ids...) are accepted
    top_k: integer(ge=1, le=MAX_TOP_K) | None = Field(None, description=(  # type: ignore[valid-type]
        "Labels per text, best first (shape [..., top_k]); absent: the top one (shape as the input's)."))
    function_to_apply: Literal[FUNCTIONS] | None = None  # type: ignore[valid-type]
    binary_data_output: StrictBool = Field(False, description="Answer every output as binary tensor data.")


class OutputTensor(BaseModel):
    name: Literal["label", "score"]
    datatype: Literal["BYTES", "FP32"]
    shape: list[int]
    data: list[str] | list[float] | None = Field(None, description="Absent when sent as binary tensor data.")
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size, for binary tensor data.")


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


@dataclass(frozen=True)
class InferModels:
    tensor: type[BaseModel]
    request: type[BaseModel]
    texts: TypeAdapter[list[str]]  # what every element of a BYTES input must be (the API's text rules)
    max_text_bytes: int  # the longest a text may be in UTF-8: what bounds binary data before it is decoded


def infer_models(text: Any, max_texts: int, max_text_chars: int) -> InferModels:
    """The infer request's models, with ``text`` the API's text type (api/protocols/fields.py), at most
    ``max_texts`` of at most ``max_text_chars`` characters."""
    tensor = create_model(
        "InferInputTensor",
        __config__=ConfigDict(extra="forbid"),
        name=(Literal["text", "text_pair"], Field(description="text, and text_pair for pairs (same shape).")),
        shape=(Annotated[list[integer(ge=0, le=INT64_MAX)], Field(min_length=1, max_length=8)], ...),  # type: ignore[misc]
        datatype=(Literal["BYTES"], ...),
        parameters=(TensorParameters | None, None),
        data=(Annotated[list[text], Field(min_length=1, max_length=max_texts)] | None, Field(  # type: ignore[valid-type]
            None, description="The texts, flat in row-major order (absent: sent as binary tensor data).")),
    )
    request = create_model(
        "InferRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]}]}),
        id=(StrictStr | None, None),
        parameters=(RequestParameters | None, None),
        inputs=(Annotated[list[tensor], Field(min_length=1, max_length=2)], ...),  # type: ignore[valid-type]
        outputs=(Annotated[list[RequestedOutput], Field(min_length=1, max_length=2)] | None, None),
    )
    return InferModels(tensor=tensor, request=request, texts=TypeAdapter(list[text]),
                       max_text_bytes=4 * max_text_chars)  # UTF-8: at most 4 bytes a character


@dataclass(frozen=True)
class InferCall:
    queries: list[Query]
    shape: list[int]  # of the input: each answer tensor has it (plus [top_k] with top_k)
    outputs: list[tuple[str, bool]]  # (name, as binary) in the order to answer them
    request_id: str | None = None
    top_k: int | None = None


def _invalid(message: str) -> ServiceError:
    return ServiceError(ErrorKind.VALIDATION, message)


def parse_infer(raw: bytes, header_length: str | None, models: InferModels, max_texts: int) -> InferCall:
    """Read an infer request (JSON, or JSON + binary tensor data). Raises ServiceError (422) saying what is wrong."""
    header, binary = _split(raw, header_length)
    check_json_values(header, max_texts)  # before the parser builds a value of a list no request has
    try:
        request: Any = models.request.model_validate_json(header)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]  # the first problem, told once
        where = ".".join(cut(part) for part in first.get("loc", ())) or "body"
        raise _invalid(f"{where}: {first.get('msg', 'invalid')}") from None
    tensors, shape = _inputs(request.inputs, binary, models, max_texts)
    params = request.parameters or RequestParameters()
    options = Options(top_k=params.top_k or 1, function=params.function_to_apply)
    pairs = tensors.get(PAIR) or [None] * len(tensors[TEXT])
    queries = [Query(text, pair, options) for text, pair in zip(tensors[TEXT], pairs)]
    requested = request.outputs or [RequestedOutput(name=name) for name in OUTPUTS]
    names = [out.name for out in requested]
    if len(set(names)) != len(names):
        raise _invalid("an output is requested twice")
    outputs = [(out.name, out.parameters.binary_data if out.parameters else params.binary_data_output)
               for out in requested]
    return InferCall(queries, shape, outputs, request.id, params.top_k)


def _inputs(inputs: list[Any], binary: bytes, models: InferModels,
            max_texts: int) -> tuple[dict[str, list[str]], list[int]]:
    """The texts of each input tensor, by name, read from its data or its share of the binary data (which they must
    use up), and the shape of ``text`` (``text_pair``'s must be the same). Each tensor's element count, from its
    shape, is checked against the limits and its binary data's size before any element is read."""
    tensors: dict[str, list[str]] = {}
    shapes: dict[str, list[int]] = {}
    for tensor in inputs:
        if tensor.name in tensors:
            raise _invalid(f"input {tensor.name!r} is given twice")
        size = tensor.parameters.binary_data_size if tensor.parameters else None
        if (tensor.data is None) == (size is None):
            raise _invalid(f"input {tensor.name!r} needs its texts in 'data' or as binary data (one of the two)")
        count = math.prod(tensor.shape)  # at most 8 dimensions of at most 2^63 - 1: a small product
        if not 1 <= count <= max_texts:
            raise _invalid(f"input {tensor.name!r} must hold 1 to {max_texts} texts, has {count}")
        if size is not None:
            if size > len(binary):
                raise _invalid(f"input {tensor.name!r} declares {size} bytes of binary data; {len(binary)} left")
            if size > (most := count * (_LENGTH.size + models.max_text_bytes)):
                raise _invalid(f"input {tensor.name!r} declares {size} bytes of binary data, more than its {count} "
                               f"element(s) can take: at most {most} (a 4-byte length and at most "
                               f"{models.max_text_bytes} bytes of UTF-8 text each)")
            texts, binary = _texts_of(binary[:size], tensor.name, count, models), binary[size:]
        else:
            texts = tensor.data
        if count != len(texts):
            raise _invalid(f"input {tensor.name!r} has shape {tensor.shape} ({count} elements) but {len(texts)} texts")
        tensors[tensor.name], shapes[tensor.name] = texts, tensor.shape
    if binary:
        raise _invalid(f"{len(binary)} bytes of binary data follow the inputs' own")
    if TEXT not in tensors:
        raise _invalid("the request needs an input named 'text' (BYTES)")
    if PAIR in tensors and shapes[PAIR] != shapes[TEXT]:
        raise _invalid(f"input 'text_pair' has shape {shapes[PAIR]}, 'text' has {shapes[TEXT]}")
    return tensors, shapes[TEXT]


def _split(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    try:
        length = int(header_length)
    except ValueError:
        raise _invalid(f"{HEADER_LENGTH} must be an integer, got {shown(header_length)}") from None
    if not 0 < length <= len(raw):
        raise _invalid(f"{HEADER_LENGTH} is {cut(length)} but the body has {len(raw)} bytes")
    return raw[:length], raw[length:]


def _texts_of(data: bytes, name: str, count: int, models: InferModels) -> list[str]:
    """The elements of a BYTES tensor in binary form (each a 4-byte little-endian length, then that many bytes), of
    which its shape says there are ``count``: refused at the first one more, so that at most ``count`` are decoded
    (from at most ``count`` texts' worth of bytes: the caller checked ``data``'s size)."""
    texts, at = [], 0
    while at < len(data):
        if len(texts) == count:
            raise _invalid(f"input {name!r}: binary data holds more than the {count} element(s) of its shape")
        if at + _LENGTH.size > len(data):
            raise _invalid(f"input {name!r}: binary data ends inside an element's length")
        (length,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        if at + length > len(data):
            raise _invalid(f"input {name!r}: binary data ends inside an element")
        try:
            texts.append(data[at:at + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise _invalid(f"input {name!r}: element {len(texts)} is not UTF-8 text") from None
        at += length
    try:
        return models.texts.validate_python(texts)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise _invalid(f"input {name!r}: element {first['loc'][0]}: {first['msg']}") from None


def encode_infer(call: InferCall, answers: list[list[Prediction]], model_name: str,
                 version: str) -> tuple[bytes, dict[str, str]]:
    """The infer response's body and headers: JSON, followed by binary tensor data for outputs asked so."""
    shape = call.shape if call.top_k is None else [*call.shape, call.top_k]
    outputs, blobs = [], []
    for name, binary in call.outputs:
        ranked = [p for labels in answers for p in labels]
        entry: dict[str, Any] = {"name": name, "datatype": OUTPUTS[name], "shape": shape}
        if name == LABEL:
            labels = [p.label for p in ranked]
            if binary:
                blob = b"".join(_LENGTH.pack(len(e)) + e for e in (label.encode() for label in labels))
            else:
                entry["data"] = labels
        else:
            scores = array("f", [p.score for p in ranked])  # FP32 (no numpy in the API process)
            if binary:
                if sys.byteorder != "little":  # the protocol's binary data is little-endian
                    scores.byteswap()
                blob = scores.tobytes()
            else:
                entry["data"] = scores.tolist()
        if binary:
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": outputs}
    if call.request_id is not None:
        body["id"] = call.request_id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
