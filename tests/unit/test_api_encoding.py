"""Content codings both ways (api/encoding.py): gzip request bodies on every POST route, inflated under the body
limit in bounded steps (a bomb is refused without being inflated), other codings refused; gzip answers for clients
that accept them, only where big enough to be worth it."""

import asyncio
import gzip
import json
import random
import time

import pytest

from api.encoding import INFLATE_CHUNK, GzipBody
from tests.unit.api_harness import KEYS, run, running, settings

JSON = {"content-type": "application/json"}
GZIP = {**JSON, "content-encoding": "gzip"}
OIP_INFER = "/v2/models/sentimentalyzer/infer"


def oip_binary(texts: list[str]) -> tuple[bytes, dict[str, str]]:
    """An infer request as tritonclient sends binary tensor data: JSON, then length-prefixed BYTES elements."""
    blob = b"".join(len(t.encode()).to_bytes(4, "little") + t.encode() for t in texts)
    head = json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return head + blob, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}


CALLS = [  # every POST route and /predict shape: path, body, headers
    ("/predict", json.dumps({"text": "a good film", "top_k": None}).encode(), JSON),
    ("/predict", json.dumps({"inputs": [["good"], ["bad", "pair"]]}).encode(), JSON),  # TEI's
    ("/predict", json.dumps({"inputs": "good", "parameters": {"top_k": 1}}).encode(), JSON),  # the Inference API's
    ("/predict/batch", json.dumps({"texts": ["good", "bad"]}).encode(), JSON),
    (OIP_INFER, json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                        "data": ["good", "bad"]}]}).encode(), JSON),
    (OIP_INFER, *oip_binary(["good", "bad"])),
]


@pytest.mark.parametrize("path,body,headers", CALLS, ids=["ours", "tei", "inference-api", "batch", "oip-json",
                                                          "oip-binary"])
def test_a_gzip_body_is_answered_as_the_plain_one_on_every_post_route(path, body, headers):
    async def scenario():
        async with running(settings()) as (http, _):
            plain = await http.post(path, content=body, headers=headers)
            members = gzip.compress(body[:7]) + gzip.compress(body[7:])  # two gzip members are one body
            for compressed in (gzip.compress(body), members):
                zipped = await http.post(path, content=compressed, headers={**headers, "content-encoding": "gzip"})
                assert plain.status_code == zipped.status_code == 200, zipped.text
                assert zipped.content == plain.content

    run(scenario())


@pytest.mark.parametrize("inflated,status", [(4096, 200), (4097, 413)])
def test_the_limit_applies_to_the_inflated_size_inclusive(inflated, status):
    body = json.dumps({"text": "x" * (inflated - len(json.dumps({"text": ""})))}).encode()
    assert len(body) == inflated and len(gzip.compress(body)) < 200

    async def scenario():
        async with running(settings(max_body_bytes=4096, max_text_chars=4096)) as (http, _):
            r = await http.post("/predict", content=gzip.compress(body), headers=GZIP)
            assert r.status_code == status, r.text
            if status == 413:
                assert r.json()["error"] == {"type": "payload_too_large",
                                             "message": "request body exceeds 4096 bytes once decompressed"}

    run(scenario())


def test_a_compressed_body_over_the_limit_is_refused_as_received():
    body = random.Random(1).randbytes(6000)  # noise: gzip cannot shrink it

    async def scenario():
        async with running(settings(max_body_bytes=4096)) as (http, _):
            r = await http.post("/predict", content=gzip.compress(body), headers=GZIP)
            assert r.status_code == 413 and r.json()["error"]["message"] == "request body exceeds 4096 bytes"

    run(scenario())


def test_a_decompression_bomb_is_refused_early_without_being_inflated():
    bomb = gzip.compress(bytes(10_000_000))  # 10 MB of zeros in ~10 KB
    limit = 65_536

    async def through_the_app():
        async with running(settings(max_body_bytes=limit)) as (http, _):
            started = time.perf_counter()
            r = await http.post("/predict", content=bomb, headers=GZIP)
            assert r.status_code == 413 and "once decompressed" in r.json()["error"]["message"]
            assert time.perf_counter() - started < 0.5
            # The server goes on (and the lifespan's first Redis calls end before it stops: fakeredis swallows a
            # cancellation that lands inside one, which would hang the test's loop at exit).
            assert (await http.post("/predict", json={"text": "good"})).status_code == 200

    async def inflated_before_the_refusal() -> tuple[int, list[int]]:
        async def receive():
            return {"type": "http.request", "body": bomb, "more_body": False}

        body, chunks = GzipBody(receive, limit), []
        with pytest.raises(Exception) as info:
            while True:
                chunks.append(len((await body())["body"]))
        assert info.value.status == 413
        return body.inflated, chunks

    run(through_the_app())
    inflated, chunks = run(inflated_before_the_refusal())
    assert inflated == limit + 1  # one byte past the limit, of 10 MB
    assert max(chunks) <= INFLATE_CHUNK


def test_inflating_a_big_body_lets_other_tasks_run_between_steps():
    body = bytes(1_000_000)

    async def scenario() -> tuple[int, int]:
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        async def receive():
            return {"type": "http.request", "body": gzip.compress(body), "more_body": False}

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        reader, steps, got = GzipBody(receive, len(body)), 0, b""
        while True:
            message = await reader()
            steps, got = steps + 1, got + message["body"]
            if not message["more_body"]:
                break
        task.cancel()
        assert got == body
        return steps, ticks

    steps, ticks = run(scenario())
    assert steps >= len(body) // INFLATE_CHUNK and ticks >= steps - 1


@pytest.mark.parametrize("body,why", [(b"not gzip at all", "is not valid gzip (incorrect header check)"),
                                      (gzip.compress(b'{"text": "good"}')[:-5], "ends before the end of its gzip"),
                                      (b"", "ends before the end of its gzip")],
                         ids=["not-gzip", "truncated", "empty"])
def test_a_corrupt_gzip_body_is_the_documented_422(body, why):
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.post("/predict", content=body, headers=GZIP)
            assert r.status_code == 422 and r.json()["error"]["type"] == "validation"
            assert r.json()["error"]["message"].startswith(f"request body (Content-Encoding: gzip) {why}")
            r = await http.post(OIP_INFER, content=body, headers=GZIP)
            assert r.status_code == 422 and why in r.json()["error"]  # the protocol's body

    run(scenario())


def test_gzip_is_known_by_any_case_and_its_old_name_and_only_post_bodies_are_decoded():
    async def scenario():
        async with running(settings()) as (http, _):
            for coding in ("GZIP", " x-gzip "):
                r = await http.post("/predict", content=gzip.compress(b'{"text": "good"}'),
                                    headers={**JSON, "content-encoding": coding})
                assert r.status_code == 200 and r.json()["label"] == "POSITIVE", coding
            assert (await http.get("/healthz", headers={"content-encoding": "br"})).status_code == 200

    run(scenario())


@pytest.mark.parametrize("coding", ["br", "deflate", "zstd", "gzip, br"])
def test_other_content_codings_are_415_naming_gzip(coding):
    async def scenario():
        async with running(settings()) as (http, client):
            for path in ("/predict", OIP_INFER):
                r = await http.post(path, content=b"{}", headers={**JSON, "content-encoding": coding})
                assert r.status_code == 415 and r.headers["accept-encoding"] == "gzip"
                error = r.json()["error"]
                message = error if path == OIP_INFER else error["message"]
                assert message.startswith(f"Content-Encoding {coding!r} is not supported")
            assert await client.llen(KEYS.requests) == 0
            r = await http.post("/predict", json={"text": "good"}, headers={"content-encoding": "identity"})
            assert r.status_code == 200

    run(scenario())


def test_answers_are_gzipped_for_clients_that_accept_it_when_big_enough():
    async def scenario():
        async with running(settings()) as (http, _):
            plain = await http.get("/openapi.json", headers={"accept-encoding": "identity"})
            assert "content-encoding" not in plain.headers
            zipped = await http.get("/openapi.json", headers={"accept-encoding": "gzip"})
            assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
            assert int(zipped.headers["content-length"]) < len(plain.content) / 4
            assert zipped.json() == plain.json()  # httpx inflated it
            small = await http.post("/predict", json={"text": "good"}, headers={"accept-encoding": "gzip"})
            assert small.status_code == 200 and "content-encoding" not in small.headers
            assert "vary" not in small.headers

    run(scenario())
