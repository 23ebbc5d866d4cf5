"""Hostile bodies on the real app (fakeredis, a fake worker): a body holding more JSON values than any request is
refused before it is parsed, with no more memory than the body's own; top_k's static maximum, in every schema and
checked before anything is queued, also with no worker to say the model's labels; integers as JSON Schema counts
them; an error names the first problem once and quotes at most 100 characters of the client's input."""

import tracemalloc

import pytest

from common.options import MAX_TOP_K, Options
from common.protocol import MAX_LABELS
from tests.unit.api_harness import KEYS, fake_answer, run, running, settings

MIB = 1 << 20
LIMITS = {"max_body_bytes": 2 * MIB}  # a 1 MiB body gets past the size limit: what is in it decides
INFER = "/v2/models/sentimentalyzer/infer"


def ranked(text, index=0, top_k=None):
    return [{"label": p.label, "score": p.score} for p in fake_answer(text, index, top_k)]


def hostile_json(prefix: bytes, item: bytes, suffix: bytes) -> bytes:
    """A body of about 1 MiB: ``prefix``, then ``item`` over and over, comma-separated, then ``suffix``."""
    count = (MIB - len(prefix) - len(suffix)) // (len(item) + 1)
    return prefix + b",".join([item] * count) + suffix


HOSTILE = {
    "tei-empty-lists": ("/predict", hostile_json(b'{"inputs":[', b'[""]', b"]}")),  # ~210,000 lists
    "inference-api-lists": ("/predict", hostile_json(b'{"parameters":{},"inputs":[', b'["a","b"]', b"]}")),
    "ours-empty-texts": ("/predict/batch", hostile_json(b'{"texts":[', b'""', b"]}")),
    "ours-objects": ("/predict", hostile_json(b'{"texts":[', b"{}", b"]}")),
    "deep-lists": ("/predict", b"[" * (MIB // 2) + b"]" * (MIB // 2)),
    "oip-json-empty-texts": (INFER, hostile_json(
        b'{"inputs":[{"name":"text","shape":[1],"datatype":"BYTES","data":[', b'""', b"]}]}")),
}


@pytest.mark.parametrize("route,body", HOSTILE.values(), ids=HOSTILE)
def test_a_mebibyte_of_values_is_refused_before_it_is_parsed(route, body):
    async def scenario():
        async with running(settings(**LIMITS), worker=False) as (http, client):
            tracemalloc.start()
            try:
                r = await http.post(route, content=body, headers={"content-type": "application/json"})
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            message = r.json()["error"] if route == INFER else r.json()["error"]["message"]
            assert r.status_code == 422 and message.startswith(
                "request body could not be parsed as JSON within its limits: more than 84 values"), message
            # The body held a few times over (client, transport, server), never an object per value: parsed, the
            # lists alone are ~20 MB.
            assert peak < 6 * MIB, peak
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


def test_the_largest_requests_of_every_shape_are_answered():
    # Commas and brackets inside texts are not values: these texts have more of them than the limit (84).
    texts = [f"{i}, [so], {{so}}, \"so\" " * 3 for i in range(5)]  # max_batch_texts is 5
    options = {"top_k": 2, "function_to_apply": "none", "truncate": True, "truncation_direction": "left"}
    pairs = [{"text": t, "text_pair": t} for t in texts]
    infer = {"id": "r", "parameters": {"top_k": 2, "function_to_apply": "none", "priority": 1, "timeout": 9},
             "inputs": [{"name": n, "shape": [1, 5], "datatype": "BYTES", "data": texts, "parameters": {"x": 1}}
                        for n in ("text", "text_pair")],
             "outputs": [{"name": "label", "parameters": {"binary_data": False}}, {"name": "score"}]}

    async def scenario():
        async with running(settings()) as (http, _):
            for route, body in [
                ("/predict/batch", {"texts": pairs, **options}),
                ("/predict", {"inputs": [[t, t] for t in texts], "raw_scores": True, "truncate": True,
                              "truncation_direction": "left", "parameters": {"top_k": 2, "function_to_apply": "none"}}),
                ("/predict", {"inputs": [[t, t] for t in texts], "raw_scores": True, "truncate": None,
                              "truncation_direction": "Left"}),
                (INFER, infer),
            ]:
                r = await http.post(route, json=body)
                assert r.status_code == 200, r.text

    run(scenario())


@pytest.mark.parametrize("route,body", [
    ("/predict", {"text": "good", "top_k": 2**64}),
    ("/predict/batch", {"texts": ["good"], "top_k": 2**64}),
    ("/predict", {"inputs": "good", "parameters": {"top_k": 2**64}}),
    (INFER, {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}],
             "parameters": {"top_k": 2**64}}),
    ("/predict", {"text": "good", "top_k": MAX_TOP_K + 1}),
], ids=["ours", "ours-batch", "inference-api", "oip", "one-over"])
def test_top_k_over_its_maximum_is_422_before_queueing_even_before_a_worker_describes_the_model(route, body):
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post(route, json=body)
            message = r.json()["error"] if route == INFER else r.json()["error"]["message"]
            assert r.status_code == 422 and message.endswith("top_k: Input should be less than or equal to 16384")
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


def test_every_schema_states_top_ks_maximum_while_no_worker_has_described_the_model():
    assert MAX_TOP_K <= MAX_LABELS  # every top_k admitted fits in a reply

    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            openapi = (await http.get("/openapi.json")).json()
            schemas = openapi["components"]["schemas"]
            for name in ("PredictRequest", "PredictBatchRequest", "InferenceParameters"):
                assert {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K} in (
                    schemas[name]["properties"]["top_k"]["anyOf"])
            infer = openapi["paths"]["/v2/models/{model}/infer"]["post"]["requestBody"]["content"]
            parameters = infer["application/json"]["schema"]["properties"]["parameters"]["anyOf"][0]
            assert {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K} in (
                parameters["properties"]["top_k"]["anyOf"])

    run(scenario())


def test_an_integral_float_is_an_integer_and_other_numbers_are_not():
    async def scenario():
        seen = []
        async with running(settings(), seen=seen) as (http, _):
            r = await http.post("/predict", json={"text": "good", "top_k": 2.0})
            assert r.status_code == 200 and r.json() == ranked("good", top_k=2)
            r = await http.post("/predict", json={"inputs": "good", "parameters": {"top_k": 1.0}})
            assert r.status_code == 200 and r.json() == [ranked("good", top_k=1)]
            r = await http.post(INFER, json={"inputs": [{"name": "text", "shape": [1.0, 2.0], "datatype": "BYTES",
                                                         "data": ["good", "bad"]}], "parameters": {"top_k": 1.0}})
            assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 2, 1]
            for top_k in (1.5, True, "1", 1e300):
                r = await http.post("/predict", json={"text": "good", "top_k": top_k})
                assert r.status_code == 422 and r.json()["error"]["message"].startswith("top_k: Input should be")
        assert [i.options for i in seen[:2]] == [Options(top_k=2), Options(top_k=1)]

    run(scenario())


def test_an_error_describes_the_first_problem_once_and_counts_the_others():
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            r = await http.post("/predict", json={"text": " ", "top_k": 0, "truncation_direction": "up"})
            error = r.json()["error"]
            assert r.status_code == 422 and error["message"] == (
                "text: Value error, text must contain at least one non-whitespace character (and 2 more problem(s))")
            assert error["details"] == [{"loc": ["text"], "msg": "Value error, text must contain at least one "
                                         "non-whitespace character", "type": "value_error"}]

    run(scenario())


def test_what_the_client_sent_is_quoted_back_at_most_100_characters_long():
    long = "x" * 5000
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}]}

    async def scenario():
        async with running(settings(max_body_bytes=65536), worker=False) as (http, _):
            r = await http.post("/predict", content=b'{"text": "good"}', headers={"content-type": "text/" + long})
            assert r.status_code == 415 and f"{('text/' + long)[:100]!r}…" in r.json()["error"]["message"]
            assert len(r.content) < 400
            r = await http.post("/predict", json={"text": "good", long: 1})
            assert r.status_code == 422 and r.json()["error"]["message"] == (
                f"{long[:100]}…: Extra inputs are not permitted")
            assert r.json()["error"]["details"][0]["loc"] == [f"{long[:100]}…"] and len(r.content) < 400
            r = await http.post(INFER, json=body, headers={"Inference-Header-Content-Length": long})
            assert r.status_code == 422 and r.json()["error"] == (
                f"Inference-Header-Content-Length must be an integer, got {long[:100]!r}…")
            r = await http.post(f"/v2/models/{long}/infer", json=body)
            assert r.status_code == 404 and r.json()["error"].startswith(f"no model {long[:100]!r}… here")
            assert len(r.content) < 400

    run(scenario())


@pytest.mark.parametrize("opening", [b"[", b"{", b","])
def test_the_value_count_lets_exactly_its_limit_through(opening):
    """The scan counts every comma and opening bracket outside strings, the body's first character included: its
    limit passes (the parser then judges the body), one more is refused; commas in strings are no values."""
    from api.errors import ServiceError
    from api.protocols.fields import check_json_values, json_values_limit

    limit = json_values_limit(5)

    def body(values: int) -> bytes:  # commas in a string too: over the limit by a plain count, so it is scanned
        return opening + b"," * (values - 1) + b'"' + b"," * 10 + b'"'

    check_json_values(body(limit), 5)
    with pytest.raises(ServiceError, match=f"more than {limit} values"):
        check_json_values(body(limit + 1), 5)


@pytest.mark.parametrize("opening", [b'{"a":', b"["])
def test_brackets_alone_are_counted_without_a_comma_in_the_body(opening):
    """Deep nesting has no commas: each opening bracket is a value (and a level of the parser's recursion)."""
    from api.errors import ServiceError
    from api.protocols.fields import check_json_values, json_values_limit

    limit = json_values_limit(5)
    check_json_values(opening * limit, 5)
    with pytest.raises(ServiceError, match=f"more than {limit} values"):
        check_json_values(opening * (limit + 1), 5)


def test_commas_in_a_string_that_never_ends_are_left_to_the_parser():
    """An unterminated string is a syntax error the parser reports; the scan stops there instead of counting what
    follows as values."""
    from api.protocols.fields import check_json_values, json_values_limit

    check_json_values(b'["' + b"," * (json_values_limit(5) + 10), 5)
