"""The HTTP layer and the producer path against fakeredis, with a fake worker coroutine."""

import asyncio

import fakeredis
import pytest

from common.protocol import Reply, WorkError, decode_item, encode_reply
from common.redis_factory import async_client
from tests.helpers import free_port
from tests.unit.api_harness import KEYS, run, running, settings


def test_predict_returns_label_and_score_with_timing_headers():
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.post("/predict", json={"text": "a good film"})
            assert r.status_code == 200
            assert r.json() == {"label": "POSITIVE", "score": 0.5}
            assert len(r.headers["X-Request-ID"]) == 32
            assert float(r.headers["X-Queue-Time"]) == 1.0 and float(r.headers["X-Inference-Time"]) == 2.0

    run(scenario())


def test_batch_answers_in_input_order():
    async def scenario():
        async with running(settings()) as (http, _):
            texts = ["bad", "good", "meh", "very good", "no"]
            r = await http.post("/predict/batch", json={"texts": texts})
            assert r.status_code == 200
            results = r.json()["results"]
            assert [x["label"] for x in results] == ["NEGATIVE", "POSITIVE", "NEGATIVE", "POSITIVE", "NEGATIVE"]
            assert [x["score"] for x in results] == [0.5, 0.51, 0.52, 0.53, 0.54]

    run(scenario())


BAD_BODIES = [
    ({"text": ""}, "at least 1 character"),
    ({"text": "   \n\t"}, "non-whitespace"),
    ({"text": 12}, "valid string"),
    ({"text": None}, "valid string"),
    ({}, "exactly one of 'text'"),
    ({"text": "a", "inputs": "b"}, "exactly one of 'text'"),
    ({"text": "ok", "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
    ({"text": "ok", "function_to_apply": "relu"}, "function_to_apply: Input should be 'softmax', 'sigmoid' or"),
    ({"text": "ok", "truncation_direction": "middle"}, "truncation_direction: Input should be"),
    ({"text": "ok", "text_pair": ""}, "text_pair: String should have at least 1 character"),
    ({"text": "x" * 101}, "at most 100 characters"),
    ({"text": "ok", "extra": 1}, "Extra inputs"),
    (["text"], "exactly one of 'text'"),
]


@pytest.mark.parametrize("body,message", BAD_BODIES)
def test_bad_single_input_is_422_with_a_message_and_never_enqueued(body, message):
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post("/predict", json=body)
            assert r.status_code == 422
            assert message in r.json()["error"]["message"] and r.json()["error"]["type"] == "validation"
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


@pytest.mark.parametrize(
    "body,message",
    [({"texts": []}, "at least 1 item"), ({"texts": ["a"] * 6}, "at most 5 items"), ({"texts": ["ok", ""]}, "texts.1"),
     ({"texts": "not a list"}, "valid list"), ({"texts": ["ok", 3]}, "texts.1")],
)
def test_bad_batch_input_is_422(body, message):
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post("/predict/batch", json=body)
            assert r.status_code == 422 and message in r.json()["error"]["message"]
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


@pytest.mark.parametrize(
    "raw,message",
    [(b'{"text": "\\ud800 lone"}', "unicode"), (b'{"text": "abc', "not valid JSON"),
     (b'{"text": "\xff\xfe"}', "UTF-8"), (b"", "Field required")],
    ids=["lone-surrogate", "truncated", "not-utf8", "empty"],
)
def test_undecodable_bodies_are_422(raw, message):
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post("/predict", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422 and message in r.json()["error"]["message"], r.text
            assert await client.llen(KEYS.requests) == 0

    run(scenario())


def test_full_queue_is_429_with_retry_after():
    async def scenario():
        s = settings(max_queue_depth=3, max_batch_texts=3, max_client_share=1.0, retry_after_s=7)
        async with running(s, worker="idle") as (http, client):
            await client.rpush(KEYS.requests, b"a", b"b", b"c")
            r = await http.post("/predict", json={"text": "hello"})
            assert r.status_code == 429 and r.headers["Retry-After"] == "7"
            assert "queue is full" in r.json()["error"]["message"]
            assert await client.llen(KEYS.requests) == 3  # nothing was pushed
            r = await http.post("/predict/batch", json={"texts": ["a", "b"]})
            assert r.status_code == 429

    run(scenario())


def test_no_answer_before_the_deadline_is_504_and_leaves_no_reply_key():
    async def scenario():
        async with running(settings(request_timeout_s=0.3), worker="idle") as (http, client):
            r = await http.post("/predict", json={"text": "anyone?"})
            assert r.status_code == 504 and r.json()["error"]["type"] == "timeout"
            assert await client.keys(KEYS.reply("*")) == []

    run(scenario())


def test_unreachable_redis_is_a_fast_503():
    async def scenario():
        s = settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_connect_timeout_s=0.5)
        client = async_client(s, longest_block_s=s.request_timeout_s, max_connections=8)
        async with running(s, worker=False, client=client) as (http, _):
            loop = asyncio.get_running_loop()
            started = loop.time()
            r = await http.post("/predict", json={"text": "hello"})
            assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
            assert "127.0.0.1" not in r.text  # no internals in error bodies
            assert loop.time() - started < 2
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/healthz")).status_code == 200
        await client.aclose()

    run(scenario())


def test_readyz_needs_a_live_worker_heartbeat():
    async def scenario():
        s = settings()
        async with running(s, worker=False) as (http, client):
            r = await http.get("/readyz")
            assert r.status_code == 503 and "no live worker" in r.json()["error"]["message"]
            await client.sadd(KEYS.models, "sentimentalyzer/1")
            await client.hset(KEYS.workers, mapping={"w1": "a", "w2": "b"})  # registered, but only w1 beats
            await client.hset(KEYS.heartbeat("w1"), mapping={"pid": "1", "backend": "openvino"})
            r = await http.get("/readyz")
            assert r.status_code == 200 and r.json()["workers"] == 1
            assert r.json()["backends"] == {"openvino": 1}  # what the live workers run
            assert r.json()["models"] == [{"name": "sentimentalyzer", "version": 1, "workers": 1, "queue_depth": 0}]

    run(scenario())


def test_worker_reported_errors_are_500_with_the_reason():
    async def scenario():
        s = settings()
        async with running(s, worker="idle") as (http, client):
            async def failing_worker():
                while True:
                    popped = await client.lpop(KEYS.requests)
                    if not popped:
                        await asyncio.sleep(0.005)
                    else:
                        item = decode_item(popped)
                        reply = Reply(item.request_id, item.index, error=WorkError("inference_failed", "oom"))
                        await client.rpush(KEYS.reply(item.request_id), encode_reply(reply))
                        return

            task = asyncio.create_task(failing_worker())
            r = await http.post("/predict", json={"text": "x"})
            await task
            assert r.status_code == 500 and "inference_failed" in r.json()["error"]["message"]

    run(scenario())


def test_metrics_expose_requests_latency_and_queue_depth():
    async def scenario():
        async with running(settings()) as (http, client):
            await http.post("/predict", json={"text": "good"})
            await http.post("/predict", json={"text": ""})
            await client.hset(KEYS.stats, mapping={"batches": 3, "texts": 7})
            body = (await http.get("/metrics")).text
            assert 'sentimentalyzer_requests_total{model="sentimentalyzer",route="/predict",status="200"} 1.0' in body
            assert 'sentimentalyzer_requests_total{model="",route="/predict",status="422"} 1.0' in body  # not routed
            assert 'sentimentalyzer_request_latency_seconds_count{model="sentimentalyzer",route="/predict"} 1.0' in body
            assert 'sentimentalyzer_queue_depth{model="sentimentalyzer",version="1"} 0.0' in body
            assert 'sentimentalyzer_worker_texts_total{model="sentimentalyzer",version="1"} 7.0' in body

    run(scenario())


def test_metrics_expose_queue_wait_inference_time_and_the_workers_batch_histograms():
    from prometheus_client.parser import text_string_to_metric_families

    from common.counters import WorkerCounts
    from worker.redis_queue import RedisRequestQueue
    from worker.window import Outbox

    async def scenario():
        server = fakeredis.FakeServer()
        s = settings()
        # Two passes published the way a worker publishes them (same MULTI as replies).
        queue = RedisRequestQueue(fakeredis.FakeRedis(server=server), KEYS, 60, "w1", "i1", suspect_deaths=2)
        queue.publish(Outbox(counts=WorkerCounts(batches=1, texts=4, tokens=60, padded_tokens=80), inference_s=0.03))
        queue.publish(Outbox(counts=WorkerCounts(batches=1, texts=16, tokens=400, padded_tokens=400),
                             inference_s=0.12))
        async with running(s, server=server) as (http, _):
            for _ in range(3):
                assert (await http.post("/predict", json={"text": "good"})).status_code == 200
            body = (await http.get("/metrics")).text
        samples = {(m.name, tuple(sorted(m.labels.items()))): m.value
                   for family in text_string_to_metric_families(body) for m in family.samples}

        def sample(name, **labels):
            per_model = {"model": "sentimentalyzer"} if name.startswith(("sentimentalyzer_queue_wait",
                                                                          "sentimentalyzer_inference")) else \
                {"model": "sentimentalyzer", "version": "1"}
            return samples[(name, tuple(sorted({**per_model, **labels}.items())))]

        # Per request (the fake worker answers queue_ms=1, inference_ms=2).
        assert sample("sentimentalyzer_queue_wait_seconds_count") == 3
        assert sample("sentimentalyzer_queue_wait_seconds_sum") == pytest.approx(0.003)
        assert sample("sentimentalyzer_inference_seconds_sum") == pytest.approx(0.006)
        # Per pass, cumulative buckets, +Inf == count.
        assert sample("sentimentalyzer_batch_texts_bucket", le="4.0") == 1
        assert sample("sentimentalyzer_batch_texts_bucket", le="16.0") == 2
        assert sample("sentimentalyzer_batch_texts_bucket", le="+Inf") == sample("sentimentalyzer_batch_texts_count") == 2
        assert sample("sentimentalyzer_batch_texts_sum") == 20
        assert sample("sentimentalyzer_batch_padded_tokens_sum") == 480
        assert sample("sentimentalyzer_batch_padding_ratio_bucket", le="0.0") == 1  # the pass with no padding
        assert sample("sentimentalyzer_batch_padding_ratio_bucket", le="0.3") == 2  # 20/80 = 0.25
        assert sample("sentimentalyzer_batch_inference_seconds_sum") == pytest.approx(0.15)

    run(scenario())


def test_api_key_guards_prediction_routes_but_not_probes():
    async def scenario():
        async with running(settings(api_key="s3cret")) as (http, _):
            assert (await http.post("/predict", json={"text": "good"})).status_code == 401
            r = await http.post("/predict", json={"text": "good"}, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
            r = await http.post("/predict", json={"text": "good"}, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200
            assert (await http.get("/healthz")).status_code == 200

    run(scenario())


def test_openapi_documents_schemas_limits_and_error_shapes():
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            spec = (await http.get("/openapi.json")).json()
            predict = spec["paths"]["/predict"]["post"]
            for status in ("200", "413", "422", "429", "503", "504"):
                assert status in predict["responses"], status
            assert predict["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
            text_schema = spec["components"]["schemas"]["PredictRequest"]["properties"]["text"]
            assert text_schema["maxLength"] == 100 and text_schema["minLength"] == 1
            assert (await http.get("/docs")).status_code == 200

    run(scenario())


def test_unknown_routes_and_methods_use_the_error_shape():
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            r = await http.get("/nope")
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
            r = await http.get("/predict")
            assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"

    run(scenario())
