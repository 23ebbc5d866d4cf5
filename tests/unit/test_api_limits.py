"""Admission limits at their boundaries: body size (declared and streamed), the per-process in-flight limit, and
the API key on every guarded route."""

import asyncio
import json

import pytest

from api.limits import BodySizeLimit
from tests.unit.api_harness import KEYS, run, running, settings

LIMIT = 4096


def body_of(size: int) -> bytes:
    """A valid /predict body of exactly ``size`` bytes."""
    body = json.dumps({"text": "x" * (size - len(json.dumps({"text": ""})))}).encode()
    assert len(body) == size
    return body


@pytest.mark.parametrize("size,status", [(LIMIT, 200), (LIMIT + 1, 413)])
def test_body_size_limit_is_inclusive_declared_or_streamed(size, status):
    async def chunks(body: bytes):
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    async def scenario():
        async with running(settings(max_body_bytes=LIMIT, max_text_chars=LIMIT)) as (http, _):
            headers = {"content-type": "application/json"}
            declared = await http.post("/predict", content=body_of(size), headers=headers)
            streamed = await http.post("/predict", content=chunks(body_of(size)), headers=headers)  # no length
            assert "content-length" not in streamed.request.headers
            for r in (declared, streamed):
                assert r.status_code == status, r.text
                if status == 413:
                    assert r.json()["error"] == {"type": "payload_too_large",
                                                 "message": f"request body exceeds {LIMIT} bytes"}

    run(scenario())


def test_a_body_over_the_limit_on_an_open_inference_protocol_route_gets_that_protocols_error_shape():
    """Declared or streamed, the 413 is shaped by the route's protocol: the OIP's ``{"error": message}``."""
    async def chunks(body: bytes):
        yield body

    async def scenario():
        async with running(settings(max_body_bytes=LIMIT)) as (http, _):
            body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                           "data": ["x" * LIMIT]}]}).encode()
            headers = {"content-type": "application/json"}
            for content in (body, chunks(body)):
                r = await http.post("/v2/models/sentimentalyzer/infer", content=content, headers=headers)
                assert (r.status_code, r.json()) == (413, {"error": f"request body exceeds {LIMIT} bytes"})

    run(scenario())


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read():
    """A client announcing a huge body gets 413 at once: the body is never read (nor the app called)."""
    sent = []

    async def app(scope, receive, send):
        raise AssertionError("the app must not be called")

    async def receive():
        raise AssertionError("the body must not be read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(LIMIT + 1).encode())]}
    asyncio.run(BodySizeLimit(app, LIMIT)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["type"] == "payload_too_large"


def test_in_flight_limit_is_429_with_retry_after_not_a_pool_error():
    async def scenario():
        # Three clients told apart behind a proxy: one alone would stop at its share of the 2 slots (1).
        s = settings(max_in_flight=2, request_timeout_s=1.0, retry_after_s=3, client_id_header="X-Forwarded-For")
        async with running(s, worker="idle") as (http, _):
            waiting = [asyncio.create_task(http.post("/predict", json={"text": f"t{i}"},
                                                     headers={"X-Forwarded-For": f"10.0.0.{i}"})) for i in range(2)]
            await asyncio.sleep(0.2)
            r = await http.post("/predict", json={"text": "one too many"}, headers={"X-Forwarded-For": "10.0.0.9"})
            assert r.status_code == 429 and "already serving 2" in r.json()["error"]["message"]
            assert r.headers["Retry-After"] == "3"
            assert [t.status_code for t in await asyncio.gather(*waiting)] == [504, 504]

    run(scenario())


@pytest.mark.parametrize("method,path,body", [("POST", "/predict", {"text": "good"}),
                                              ("POST", "/predict/batch", {"texts": ["good"]}),
                                              ("GET", "/metrics", None)])
def test_api_key_guards_predictions_and_metrics(method, path, body):
    async def scenario():
        async with running(settings(api_key="s3cret")) as (http, _):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret!"}):
                r = await http.request(method, path, json=body, headers=headers)
                assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized", headers
            r = await http.request(method, path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200

    run(scenario())


@pytest.mark.parametrize("api_key", [None, ""], ids=["unset", "empty"])
def test_without_an_api_key_nothing_is_guarded_and_the_contract_claims_no_auth(api_key):
    async def scenario():
        async with running(settings(api_key=api_key)) as (http, _):
            assert (await http.post("/predict", json={"text": "good"})).status_code == 200
            assert (await http.post("/predict", json={"text": "good"},
                                    headers={"Authorization": "Bearer anything"})).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            openapi = (await http.get("/openapi.json")).json()
            assert "securitySchemes" not in openapi.get("components", {})
            assert "401" not in openapi["paths"]["/predict"]["post"]["responses"]

    run(scenario())


@pytest.mark.parametrize("body", [b"[" * 1000 + b"]" * 1000, b'{"text": ' + b"9" * 4400 + b"}"],
                         ids=["nested-1000-deep", "4400-digit-integer"])
def test_json_the_parser_gives_up_on_is_the_documented_422(body):
    async def scenario():
        async with running(settings(max_body_bytes=65536)) as (http, _):
            r = await http.post("/predict", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"]["type"] == "validation"
            assert "could not be parsed as JSON" in r.json()["error"]["message"]

    run(scenario())


def test_a_wrong_method_is_405_with_allow():
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.get("/predict")
            assert r.status_code == 405 and r.headers["Allow"] == "POST"
            assert r.json()["error"]["type"] == "method_not_allowed"

    run(scenario())


def test_non_http_scopes_and_bodies_without_a_length_pass_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, receive, send))
        if scope["type"] == "http":
            await receive()

    async def receive():
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    async def send(message):
        pass

    limit = BodySizeLimit(app, 10)
    lifespan = {"type": "lifespan"}
    asyncio.run(limit(lifespan, receive, send))
    assert seen == [(lifespan, receive, send)]
    for headers in ([], [(b"content-length", b"not a number")]):  # the streamed check still applies
        asyncio.run(limit({"type": "http", "headers": headers}, receive, send))
    asyncio.run(limit({"type": "http"}, receive, send))  # no headers at all
    assert len(seen) == 4 and all(s[2] is send for s in seen)


def test_the_schemas_whitespace_pattern_and_the_servers_check_agree_on_every_character():
    """The OpenAPI pattern is what the server enforces: a text is valid exactly when it holds a character that is
    neither str.isspace() nor U+FEFF, which is what the pattern (spelled without \\s) matches."""
    import re

    from api.protocols.fields import HAS_NON_WHITESPACE, check_text

    for cp in (c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF):
        char = chr(cp)
        accepted = True
        try:
            check_text(char)
        except ValueError:
            accepted = False
        whitespace = char.isspace() or char == "\ufeff"
        assert accepted == (re.search(HAS_NON_WHITESPACE, char) is not None) == (not whitespace)


def test_a_text_with_a_lone_surrogate_is_refused_saying_so():
    """JSON can carry "\\ud800", which no UTF-8 text holds: the routes that parse with json.loads reach this check."""
    from api.protocols.fields import check_text

    with pytest.raises(ValueError) as refused:
        check_text("\ud800 lone")
    assert str(refused.value) == "text is not valid Unicode (it contains a lone surrogate)"


def test_one_client_at_its_share_gets_429_while_another_is_admitted():
    """Clients are told apart by CLIENT_ID_HEADER (behind a proxy that sets it): half the queue each."""
    async def scenario():
        s = settings(max_queue_depth=10, max_batch_texts=5, max_client_share=0.5, request_timeout_s=0.5,
                     client_id_header="X-Forwarded-For")
        async with running(s, worker="idle") as (http, _):
            def post(client):
                # What the client sent, then its address as the proxy in front of the API appended it.
                return http.post("/predict/batch", json={"texts": ["a", "b", "c", "d", "e"]},
                                 headers={"X-Forwarded-For": f"10.0.0.254, {client}"})

            holding = asyncio.create_task(post("10.0.0.1"))  # 5 texts: client 1's whole share
            await asyncio.sleep(0.1)
            again, other = await asyncio.gather(post("10.0.0.1"), post("10.0.0.2"))
            assert again.status_code == 429 and "this client already has 5 texts" in again.json()["error"]["message"]
            assert other.status_code == 504  # admitted (nobody answers here), not refused
            assert (await holding).status_code == 504

    run(scenario())


def test_a_queue_full_of_bytes_is_429_naming_the_byte_limit():
    async def scenario():
        s = settings(max_queue_bytes=8192, max_text_chars=100, max_batch_texts=5, max_client_share=1.0)
        async with running(s, worker="idle") as (http, client):
            keys = KEYS
            await client.rpush(keys.requests, b"queued")
            await client.set(keys.queued_bytes, 8100)  # nearly full
            r = await http.post("/predict", json={"text": "x" * 100})
            assert r.status_code == 429 and "limit 8192 bytes of text" in r.json()["error"]["message"]
            assert await client.llen(keys.requests) == 1  # nothing pushed

    run(scenario())
