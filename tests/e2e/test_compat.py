"""Clients of other servers, unchanged, against the running service (Redis, the API and a worker as real
processes): tritonclient over the Open Inference Protocol, huggingface_hub's InferenceClient and a text-embeddings-
inference-shaped call on /predict, the response cache answering a repeat without the workers, and the HTTP
conventions over real connections: gzip both ways, CORS."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis

from harness.service import Service
from tests.e2e.conftest import start_service
from tests.helpers import wait_until

TEXTS = ["a good film", "bad and boring", "good good bad", "not good at all , really not", "fine", "awful"]
MODEL_NAME = "sentiment"
ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def service(redis_server, tiny_model, tmp_path_factory) -> Iterator[Service]:
    # CACHE_TTL_S on, as a user turns it on (off by default); BACKEND=torch: the reference, the API is under test.
    svc = start_service(redis_server.url, tiny_model, tmp_path_factory.mktemp("logs"), workers=1, BACKEND="torch",
                        CACHE_TTL_S="60", SERVED_MODEL_NAME=MODEL_NAME, CORS_ALLOW_ORIGINS=ORIGIN)
    yield svc
    svc.stop()


def batch_answers(svc: Service, texts: list[str], **options) -> list:
    r = httpx.post(f"{svc.url}/predict/batch", json={"texts": texts, **options}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["results"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_speaks_to_the_service_unchanged(service, binary):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=service.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    metadata = client.get_model_metadata(MODEL_NAME)
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert client.get_server_metadata()["name"] == "sentimentalyzer"
    texts = np.array([t.encode() for t in TEXTS], dtype=np.object_).reshape(3, 2)
    tensor = triton.InferInput("text", list(texts.shape), "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("label", "score")]
    result = client.infer(MODEL_NAME, [tensor], outputs=outputs, request_id="r-1")
    labels, scores = result.as_numpy("label"), result.as_numpy("score")
    assert labels.shape == scores.shape == (3, 2) and scores.dtype == np.float32
    want = batch_answers(service, TEXTS)
    # BYTES elements come back as bytes from binary data, as str from JSON (tritonclient's own decoding)
    assert [label.decode() if binary else label for label in labels.ravel()] == [w["label"] for w in want]
    assert scores.ravel().tolist() == [float(np.float32(w["score"])) for w in want]  # the same answer, in FP32
    assert result.get_response()["id"] == "r-1"
    ranked = client.infer(MODEL_NAME, [tensor], parameters={"top_k": 2})  # no outputs named: both, binary
    assert ranked.as_numpy("label").shape == (3, 2, 2)
    assert ranked.as_numpy("label")[0, 0].tolist() == [w["label"].encode() for w in batch_answers(
        service, TEXTS[:1], top_k=2)[0]]
    with pytest.raises(InferenceServerException) as info:
        client.infer("no-such-model", [tensor])
    assert "no model 'no-such-model'" in info.value.message() and info.value.status() == "404"


def test_a_text_embeddings_inference_client_call_gets_its_shapes(service):
    r = httpx.post(f"{service.url}/predict", json={"inputs": TEXTS[0]}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    every = r.json()
    assert len(every) == 2 and [p["score"] for p in every] == sorted((p["score"] for p in every), reverse=True)
    assert every == batch_answers(service, TEXTS[:1], top_k=None)[0]
    batch = httpx.post(f"{service.url}/predict", json={"inputs": [[TEXTS[0]], [TEXTS[1], TEXTS[2]]],
                                                       "raw_scores": True}, timeout=30).json()
    assert len(batch) == 2 and all(len(ranked) == 2 for ranked in batch)
    assert batch[0] == batch_answers(service, TEXTS[:1], top_k=None, function_to_apply="none")[0]
    info = httpx.get(f"{service.url}/info", timeout=10).json()
    assert info["model_type"]["classifier"]["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
    assert info["max_input_length"] == 512 and info["backends"] == {"torch": 1}


def test_huggingface_hubs_inference_client_classifies_through_predict(service):
    from huggingface_hub import InferenceClient

    client = InferenceClient(model=f"{service.url}/predict")
    got = client.text_classification(TEXTS[1])
    want = batch_answers(service, TEXTS[1:2], top_k=None)[0]
    assert [(e.label, e.score) for e in got] == [(w["label"], w["score"]) for w in want]
    top = client.text_classification(TEXTS[1], top_k=1, function_to_apply="sigmoid")
    assert len(top) == 1 and top[0].label == batch_answers(service, TEXTS[1:2], top_k=1,
                                                            function_to_apply="sigmoid")[0][0]["label"]


def test_a_cache_hit_skips_the_queue_and_answers_like_the_miss(service):
    stats = redis.Redis.from_url(service.redis_url)
    texts = ["only this test sends this text", "nor this one"]
    first = httpx.post(f"{service.url}/predict/batch", json={"texts": texts}, timeout=30)
    wait_until(lambda: int(stats.hget(service.keys.stats, "texts") or 0) > 0, 10, "the worker's counters")
    ran = stats.hget(service.keys.stats, "texts")
    again = httpx.post(f"{service.url}/predict/batch", json={"texts": texts}, timeout=30)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.content == first.content
    assert stats.hget(service.keys.stats, "texts") == ran  # the workers ran nothing for the hit
    metrics = httpx.get(f"{service.url}/metrics", timeout=10).text
    assert "sentimentalyzer_cache_hits_total" in metrics


def test_gzip_both_ways_and_cors_over_real_connections(service):
    texts = TEXTS * 10  # answers of more than 1 KiB: worth compressing
    body = json.dumps({"texts": texts, "top_k": None}).encode()
    plain = httpx.post(f"{service.url}/predict/batch", content=body, timeout=30,
                       headers={"content-type": "application/json", "accept-encoding": "identity"})
    zipped = httpx.post(f"{service.url}/predict/batch", content=gzip.compress(body), timeout=30,
                        headers={"content-type": "application/json", "content-encoding": "gzip",
                                 "accept-encoding": "gzip", "origin": ORIGIN})
    assert plain.status_code == zipped.status_code == 200 and "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip" and zipped.json() == plain.json()  # httpx inflated it
    assert zipped.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in zipped.headers["access-control-expose-headers"]
    refused = httpx.post(f"{service.url}/predict", content=body, timeout=30,
                         headers={"content-type": "application/json", "content-encoding": "br"})
    assert refused.status_code == 415 and refused.headers["accept-encoding"] == "gzip"
    preflight = httpx.options(f"{service.url}/predict", timeout=10, headers={
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,content-encoding,authorization"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN


def test_tritonclient_compresses_both_ways(service):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=service.url.removeprefix("http://"))
    texts = np.array([t.encode() for t in TEXTS * 10], dtype=np.object_)
    tensor = triton.InferInput("text", list(texts.shape), "BYTES")
    tensor.set_data_from_numpy(texts, binary_data=False)
    outputs = [triton.InferRequestedOutput(name, binary_data=False) for name in ("label", "score")]  # > 1 KiB
    plain = client.infer(MODEL_NAME, [tensor], outputs=outputs)
    zipped = client.infer(MODEL_NAME, [tensor], outputs=outputs, request_compression_algorithm="gzip",
                          response_compression_algorithm="gzip")
    assert zipped.as_numpy("label").tolist() == plain.as_numpy("label").tolist()
    assert zipped.as_numpy("score").tolist() == plain.as_numpy("score").tolist()
