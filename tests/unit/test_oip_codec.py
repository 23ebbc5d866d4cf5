"""The Open Inference Protocol's infer messages (api/protocols/oip_codec.py): JSON and binary tensor data both ways,
and every way a request can be wrong."""

import json
import struct
import tracemalloc

import numpy as np
import pytest

from api.errors import ErrorKind, ServiceError
from api.protocols import request_models
from api.protocols.oip_codec import HEADER_LENGTH, encode_infer, infer_models, parse_infer
from common.options import Options, Query
from common.protocol import Prediction
from tests.unit.api_harness import settings

LIMITS = settings()  # max_text_chars=100, max_batch_texts=5


def models():
    """Built by the test that uses them, not at import: a mutation run switches its mutant on after imports."""
    return infer_models(request_models(LIMITS).text, LIMITS.max_batch_texts, LIMITS.max_text_chars)


def parse(body, header_length=None, built=None):
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return parse_infer(raw, header_length, built or models(), LIMITS.max_batch_texts)


def tensor(name="text", data=("great", "awful"), shape=None, **extra):
    return {"name": name, "shape": shape or [len(data)], "datatype": "BYTES", "data": list(data), **extra}


def binary_bytes(texts):
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def with_binary(header: dict, blob: bytes) -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + blob, str(len(head))


def test_json_texts_become_queries_and_both_outputs_come_back_in_json():
    call = parse({"id": "r1", "inputs": [tensor(shape=[2, 1])]})
    assert call.queries == [Query("great"), Query("awful")] and call.shape == [2, 1]
    body, headers = encode_infer(call, [[Prediction("POSITIVE", 0.75)], [Prediction("NEGATIVE", 0.5)]], "m", "1")
    assert headers == {"content-type": "application/json"}
    assert json.loads(body) == {"model_name": "m", "model_version": "1", "id": "r1", "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [2, 1], "data": ["POSITIVE", "NEGATIVE"]},
        {"name": "score", "datatype": "FP32", "shape": [2, 1], "data": [0.75, 0.5]}]}


def test_binary_inputs_and_outputs_as_tritonclient_sends_and_reads_them():
    texts = ["héllo wörld", "a pair's first"]
    raw, length = with_binary({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                           "parameters": {"binary_data_size": len(binary_bytes(texts))}},
                                          {"name": "text_pair", "shape": [2], "datatype": "BYTES",
                                           "data": ["x", "second"]}],
                               "outputs": [{"name": "score", "parameters": {"binary_data": True}}, {"name": "label"}],
                               "parameters": {"top_k": 2, "function_to_apply": "sigmoid"}},
                              binary_bytes(texts))
    call = parse(raw, length)
    options = Options(top_k=2, function="sigmoid")
    assert call.queries == [Query(texts[0], "x", options), Query(texts[1], "second", options)]
    answers = [[Prediction("A", 0.9), Prediction("B", 0.1)], [Prediction("B", 0.6), Prediction("A", 0.4)]]
    body, headers = encode_infer(call, answers, "m", "1")
    header = json.loads(body[:int(headers[HEADER_LENGTH])])
    assert [o["name"] for o in header["outputs"]] == ["score", "label"]  # in the order asked
    score, label = header["outputs"]
    assert score["shape"] == [2, 2] and score["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(body[int(headers[HEADER_LENGTH]):], dtype="<f4").tolist() == pytest.approx([0.9, 0.1, 0.6,
                                                                                                      0.4])
    assert label["data"] == ["A", "B", "B", "A"]


def test_binary_output_for_every_output_when_the_request_asks_for_it():
    call = parse({"inputs": [tensor(data=["ok", "bad"])], "parameters": {"binary_data_output": True}})
    body, headers = encode_infer(call, [[Prediction("POSITIVE", 0.5)], [Prediction("NEGATIVE", 0.25)]], "m", "1")
    header_length = int(headers[HEADER_LENGTH])
    assert headers == {"content-type": "application/octet-stream", HEADER_LENGTH: str(header_length)}
    blob = body[header_length:]
    # BYTES elements back to back, each after its own length (nothing between them), then the FP32 scores
    assert blob == binary_bytes(["POSITIVE", "NEGATIVE"]) + np.array([0.5, 0.25], dtype="<f4").tobytes()


def test_a_full_batch_is_accepted_whether_sent_as_json_or_binary():
    assert len(parse({"inputs": [tensor(data=["ok"] * 5)]}).queries) == 5  # max_batch_texts is 5
    blob = binary_bytes(["ok"] * 5)
    raw, length = with_binary({"inputs": [{"name": "text", "shape": [5], "datatype": "BYTES",
                                           "parameters": {"binary_data_size": len(blob)}}]}, blob)
    assert len(parse(raw, length).queries) == 5


def test_a_header_length_covering_the_whole_body_means_no_binary_data():
    # Some clients send Inference-Header-Content-Length with a plain JSON body: it is the body's length.
    raw = json.dumps({"inputs": [tensor()]}).encode()
    assert [q.text for q in parse(raw, str(len(raw))).queries] == ["great", "awful"]


@pytest.mark.parametrize("length,message", [
    ("0", f"{HEADER_LENGTH} is 0 but the body has"),
    ("-1", f"{HEADER_LENGTH} is -1 but the body has"),
    ("1", "body: Invalid JSON"),  # a length inside the body is taken: the JSON it cuts off is what is wrong
])
def test_the_header_length_must_leave_some_json(length, message):
    with pytest.raises(ServiceError) as info:
        parse(json.dumps({"inputs": [tensor()]}).encode(), length)
    assert info.value.message.startswith(message)


@pytest.mark.parametrize("body,header_length,message", [
    ({"inputs": [tensor(name="txt")]}, None, "inputs.0.name: Input should be 'text' or 'text_pair'"),
    ({"inputs": [tensor(datatype="FP32")]}, None, "inputs.0.datatype: Input should be 'BYTES'"),
    ({"inputs": [tensor(shape=[3])]}, None, "input 'text' has shape [3] (3 elements) but 2 texts"),
    ({"inputs": [tensor(data=["ok"] * 6)]}, None, "inputs.0.data: List should have at most 5 items"),
    ({"inputs": [tensor(data=[""])]}, None, "inputs.0.data.0: String should have at least 1 character"),
    ({"inputs": [tensor(data=["ok"], name="text_pair")]}, None, "the request needs an input named 'text' (BYTES)"),
    ({"inputs": [tensor(), tensor()]}, None, "input 'text' is given twice"),
    ({"inputs": [tensor(), tensor(name="text_pair", data=["a"])]}, None,
     "input 'text_pair' has shape [1], 'text' has [2]"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}, None,
     "input 'text' needs its texts in 'data' or as binary data (one of the two)"),
    ({"inputs": [tensor()], "outputs": [{"name": "label"}, {"name": "label"}]}, None, "an output is requested twice"),
    ({"inputs": [tensor()], "outputs": [{"name": "logits"}]}, None, "outputs.0.name: Input should be 'label' or"),
    ({"inputs": [tensor()], "parameters": {"top_k": 0}}, None, "parameters.top_k: Input should be greater than or"),
    ({"inputs": [tensor(colour="red")]}, None, "inputs.0.colour: Extra inputs are not permitted"),
    ({"inputs": [tensor(shape=[1] * 9, data=["ok"])]}, None, "inputs.0.shape: List should have at most 8 items"),
    ({"inputs": [tensor(shape=[1] * 8, data=["ok"])], "bad": 1}, None, "bad: Extra inputs are not permitted"),
    ({"inputs": [{"name": "text", "shape": [], "datatype": "BYTES", "data": ["ok"]}]}, None,
     "inputs.0.shape: List should have at least 1 item"),
    ({"inputs": [tensor(shape=[-1, 2])]}, None, "inputs.0.shape.0: Input should be greater than or equal to 0"),
    ({"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}, None,
     "inputs.0.data: List should have at least 1 item"),
    (b"{not json", None, "body: Invalid JSON"),
    (json.dumps({"inputs": [tensor()]}).encode(), "lots", f"{HEADER_LENGTH} must be an integer, got 'lots'"),
    (json.dumps({"inputs": [tensor()]}).encode(), "9999", f"{HEADER_LENGTH} is 9999 but the body has"),
])
def test_a_wrong_request_is_422_saying_what_is_wrong(body, header_length, message):
    with pytest.raises(ServiceError) as info:
        parse(body, header_length)
    assert info.value.kind == ErrorKind.VALIDATION and message in info.value.message


def test_the_published_schema_names_the_input_tensor_and_says_what_its_fields_hold():
    """What /openapi.json shows a client writing its own requests (tritonclient needs none of it)."""
    schema = models().request.model_json_schema()
    tensor_schema = schema["$defs"]["InferInputTensor"]
    assert tensor_schema["title"] == "InferInputTensor" and tensor_schema["additionalProperties"] is False
    fields = tensor_schema["properties"]
    assert fields["name"]["description"] == "text, and text_pair for pairs (same shape)."
    assert fields["data"]["description"] == "The texts, flat in row-major order (absent: sent as binary tensor data)."
    assert schema["title"] == "InferRequest" and schema["additionalProperties"] is False
    (example,) = schema["examples"]  # the documented example is a request the service takes
    assert example == {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]}
    assert [q.text for q in parse(example).queries] == ["great", "awful"]


@pytest.mark.parametrize("blob,declared,message", [
    (binary_bytes(["ok"])[:-1], None, "binary data ends inside an element"),
    (b"\x05\x00", None, "binary data ends inside an element's length"),
    (struct.pack("<I", 2) + b"\xff\xfe", None, "element 0 is not UTF-8 text"),
    (binary_bytes(["   "]), None, "element 0: Value error, text must contain at least one non-whitespace"),
    (binary_bytes(["ok"]) + b"extra", len(binary_bytes(["ok"])), "5 bytes of binary data follow the inputs' own"),
    (binary_bytes(["ok"]), 100, "declares 100 bytes of binary data; 6 left"),
    (struct.pack("<I", 0), None, "element 0: String should have at least 1 character"),
])
def test_broken_binary_tensor_data_is_422(blob, declared, message):
    raw, length = with_binary({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                           "parameters": {"binary_data_size": declared or len(blob)}}]}, blob)
    with pytest.raises(ServiceError) as info:
        parse(raw, length)
    assert message in info.value.message


@pytest.mark.parametrize("body,message", [
    ({"inputs": [tensor()], "outputs": [{"name": "score"}, {"name": "score"}]}, "an output is requested twice"),
    ({"inputs": [tensor(data=["ok"], name="text_pair")]}, "the request needs an input named 'text' (BYTES)"),
])
def test_our_own_refusals_are_the_whole_message(body, message):
    with pytest.raises(ServiceError) as info:
        parse(body)
    assert info.value.message == message


@pytest.mark.parametrize("texts", [[], ["ok"] * 6], ids=["none", "six"])
def test_binary_inputs_hold_one_to_max_batch_texts(texts):
    # JSON data is held to that by its schema; binary data only by this count.
    blob = binary_bytes(texts)
    raw, length = with_binary({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                           "parameters": {"binary_data_size": len(blob)}}]}, blob)
    with pytest.raises(ServiceError) as info:
        parse(raw, length)
    assert info.value.message == f"input 'text' must hold 1 to 5 texts, has {len(texts)}"


def test_broken_binary_data_names_the_input_it_is_in():
    blob = binary_bytes(["ok"])[:-1]
    raw, length = with_binary({"inputs": [tensor(data=["ok"]), {
        "name": "text_pair", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(blob)}}]}, blob)
    with pytest.raises(ServiceError) as info:
        parse(raw, length)
    assert info.value.message == "input 'text_pair': binary data ends inside an element"


def peak_bytes(call):
    """What ``call()`` allocated at most at once, and what it raised (or returned)."""
    tracemalloc.start()
    try:
        try:
            outcome = call()
        except ServiceError as exc:
            outcome = exc
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


def binary_request(blob, shape, declared=None):
    return with_binary({"inputs": [{"name": "text", "shape": shape, "datatype": "BYTES",
                                    "parameters": {"binary_data_size": len(blob) if declared is None else declared}}]},
                       blob)


def test_a_mebibyte_of_empty_elements_under_shape_1_is_refused_by_its_size_before_any_is_read():
    # 262,000 empty elements: decoding and validating each cost ~1 s and ~300 MB; the shape says 1 element, and 1
    # element of at most MAX_TEXT_CHARS=100 characters is at most 4 + 400 bytes.
    raw, length = binary_request(b"\0\0\0\0" * 262_000, [1])
    built = models()  # before measuring: the parse's own allocations only
    peak, outcome = peak_bytes(lambda: parse(raw, length, built))
    assert isinstance(outcome, ServiceError) and outcome.kind == ErrorKind.VALIDATION
    assert outcome.message == ("input 'text' declares 1048000 bytes of binary data, more than its 1 element(s) can "
                               "take: at most 404 (a 4-byte length and at most 400 bytes of UTF-8 text each)")
    assert peak < 2 * len(raw) + 256 * 1024  # the body split in two; not one object per element


def test_binary_data_holding_more_elements_than_its_shape_is_refused_at_the_first_extra_one():
    # Within the size 5 elements can take (5 x 404 bytes), 505 empty elements: refused at the sixth length read,
    # before any element is decoded (an element's refusal would otherwise name element 0, the empty one).
    raw, length = binary_request(b"\0\0\0\0" * 505, [5])
    built = models()  # before measuring: the parse's own allocations only
    peak, outcome = peak_bytes(lambda: parse(raw, length, built))
    assert outcome.message == "input 'text': binary data holds more than the 5 element(s) of its shape"
    assert peak < 64 * 1024


@pytest.mark.parametrize("shape", [[6], [3, 2], [2**62, 2**62], [2**63 - 1] * 8, [0]], ids=str)
def test_a_shape_holding_more_than_max_batch_texts_is_refused_before_its_data_is_read(shape):
    raw, length = binary_request(b"\0\0\0\0" * 505, shape)  # data that would be refused for another reason
    with pytest.raises(ServiceError) as info:
        parse(raw, length)
    assert info.value.message.startswith("input 'text' must hold 1 to 5 texts, has ")


@pytest.mark.parametrize("body", [
    {"inputs": [tensor(data=[""] * 300_000, shape=[1])]},
    {"inputs": [tensor()], "parameters": {"junk": [[]] * 200_000}},  # Triton's own parameters are accepted: any JSON
    {"inputs": [tensor(parameters={"junk": [{}] * 200_000})]},
], ids=["300k-empty-texts", "200k-lists-in-parameters", "200k-objects-in-tensor-parameters"])
def test_json_with_more_values_than_any_request_has_is_refused_before_it_is_parsed(body):
    raw = json.dumps(body, separators=(",", ":")).encode()
    built = models()  # before measuring: the parse's own allocations only
    peak, outcome = peak_bytes(lambda: parse(raw, None, built))
    assert isinstance(outcome, ServiceError)
    assert outcome.message.startswith("request body could not be parsed as JSON within its limits: more than 84 "
                                      "values")  # 4 per text of MAX_BATCH_TEXTS=5, and 64
    assert peak < 256 * 1024  # the JSON parser built nothing (200,000 lists are ~15 MB)


def test_the_largest_requests_have_fewer_values_than_the_limit():
    texts = ["a, [b], {c}, \"d\""] * 5  # commas and brackets inside strings are not values
    options = {"parameters": {"top_k": 2, "function_to_apply": "none", "binary_data_output": False, "priority": 1,
                              "timeout": 1000, "sequence_id": 7}}
    outputs = [{"name": "label", "parameters": {"binary_data": False}}, {"name": "score"}]
    call = parse({"id": "r", "inputs": [tensor(data=texts, shape=[1, 1, 1, 1, 1, 1, 1, 5], parameters={"x": 1}),
                                        tensor(name="text_pair", data=texts, shape=[1, 1, 1, 1, 1, 1, 1, 5])],
                  "outputs": outputs, **options})
    assert len(call.queries) == 5 and call.top_k == 2


@pytest.mark.parametrize("field,value", [("top_k", 2.0), ("shape", [2.0]), ("binary_data_size", float(len(
    binary_bytes(["great", "awful"]))))])
def test_an_integral_float_is_an_integer_as_json_schema_says(field, value):
    blob = binary_bytes(["great", "awful"])
    size = value if field == "binary_data_size" else len(blob)
    header = {"inputs": [{"name": "text", "shape": value if field == "shape" else [2], "datatype": "BYTES",
                          "parameters": {"binary_data_size": size}}],
              "parameters": {"top_k": value if field == "top_k" else 1}}
    call = parse(*with_binary(header, blob))
    assert [q.text for q in call.queries] == ["great", "awful"] and call.shape == [2]


@pytest.mark.parametrize("top_k,message", [
    (1.5, "parameters.top_k: Input should be a valid integer"),
    (True, "parameters.top_k: Input should be a valid integer"),
    ("2", "parameters.top_k: Input should be a valid integer"),
    (2**64, "parameters.top_k: Input should be less than or equal to 16384"),
    (16_385, "parameters.top_k: Input should be less than or equal to 16384"),
])
def test_top_k_is_an_integer_up_to_its_documented_maximum(top_k, message):
    with pytest.raises(ServiceError) as info:
        parse({"inputs": [tensor()], "parameters": {"top_k": top_k}})
    assert info.value.message == message


def test_a_shape_dimension_beyond_int64_is_refused_without_being_echoed():
    with pytest.raises(ServiceError) as info:
        parse({"inputs": [tensor(shape=[10**4000])]})
    assert info.value.message == "inputs.0.shape.0: Input should be less than or equal to 9223372036854775807"


def test_a_long_header_is_not_echoed_whole():
    with pytest.raises(ServiceError) as info:
        parse(json.dumps({"inputs": [tensor()]}).encode(), "x" * 5000)
    assert info.value.message == f"{HEADER_LENGTH} must be an integer, got {'x' * 100!r}…"
    raw = json.dumps({"inputs": [tensor()]}).encode()
    with pytest.raises(ServiceError) as info:
        parse(raw, "9" * 4000)
    assert info.value.message == f"{HEADER_LENGTH} is {'9' * 100}… but the body has {len(raw)} bytes"


def test_a_long_key_is_named_by_its_start():
    with pytest.raises(ServiceError) as info:
        parse({"inputs": [tensor()], "k" * 5000: 1})
    assert info.value.message == f"{'k' * 100}…: Extra inputs are not permitted"
