"""Redis + API + 2 workers as real processes, over HTTP."""

import asyncio
import re
import signal

import httpx
import redis

from api.settings import ApiSettings
from common.keys import DEFAULT_MODEL_NAME
from harness.service import Service
from tests.answers import assert_discriminating, expected_answers, same_answer
from tests.helpers import sentences, wait_until

# One address is one client: with the default settings it may have MAX_CLIENT_SHARE x MAX_IN_FLIGHT requests in
# flight (more: 429). Its other requests wait for a connection, as a client's own pool would make them.
_FIELDS = ApiSettings.model_fields
CLIENT_SLOTS = int(_FIELDS["max_client_share"].default * _FIELDS["max_in_flight"].default)
# The cluster metrics' labels of the model version the service's workers serve (the default name, version 1), as
# /metrics writes them: every sample's labels in alphabetical order (prometheus_client sorts them).
SERVED = f'model="{DEFAULT_MODEL_NAME}",version="1"'


async def fire(url: str, texts: list[str], *, batch_every: int = 5) -> list[tuple[list[str], httpx.Response]]:
    """Concurrent requests (up to CLIENT_SLOTS at a time): most single /predict, every batch_every-th a
    /predict/batch of 3 texts."""
    connections = min(len(texts), CLIENT_SLOTS)
    # Idle connections are dropped before the API's keep-alive timeout (uvicorn's 5 s) closes them: a request sent
    # on a connection the server is closing fails (ReadError), and httpx does not retry a POST. With 400 requests
    # on 256 connections, some wait seconds for one on a loaded 2-core machine.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def one(i: int, text: str):
            if i % batch_every == 0:
                group = [text, text[::-1].strip() or "x", "ok"]
                return group, await client.post("/predict/batch", json={"texts": group})
            return [text], await client.post("/predict", json={"text": text})

        return await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))


def results(response: httpx.Response) -> list[dict]:
    body = response.json()
    return body["results"] if "results" in body else [body]


def assert_correct(outcomes, predictor) -> None:
    """Every request answered 200, each text with its own answer (computed in-process, one text at a time)."""
    expected = expected_answers(predictor, (text for texts, _ in outcomes for text in texts))
    assert_discriminating(expected)
    for texts, response in outcomes:
        assert response.status_code == 200, response.text
        for text, got in zip(texts, results(response), strict=True):
            assert same_answer(got["label"], got["score"], expected[text]), (text, got, expected[text])


def worker_id_of(svc: Service, pid: int) -> str:
    """The registered id of the worker process ``pid`` (from the heartbeats)."""
    client = redis.Redis.from_url(svc.redis_url)
    return next(m.decode() for m in client.hkeys(svc.keys.workers)
                if client.hget(svc.keys.heartbeat(m.decode()), "worker_id").decode().endswith(f"-{pid}"))


def leftover_keys(svc: Service) -> set[str]:
    client = redis.Redis.from_url(svc.redis_url)
    keys = {k.decode() for k in client.scan_iter(svc.keys.pattern)}
    return {k for k in keys - svc.keys.persistent() if not k.startswith(svc.keys.heartbeat(""))}


def test_concurrent_requests_each_get_their_own_correct_answer(service, tiny_predictor):
    outcomes = asyncio.run(fire(service.url, sentences(200)))
    assert_correct(outcomes, tiny_predictor)
    assert leftover_keys(service) == set(), "per-request keys leaked"
    stats = redis.Redis.from_url(service.redis_url).hgetall(service.keys.stats)
    assert int(stats[b"texts"]) >= 200 + 2 * 40
    assert int(stats[b"batches"]) < int(stats[b"texts"]), "requests were batched"


def test_sigterm_to_a_worker_under_load_finishes_its_window_and_fails_no_request(service, tiny_predictor):
    victim = service.workers[0]
    client = redis.Redis.from_url(service.redis_url)
    inflight = service.keys.inflight(worker_id_of(service, victim.pid))

    async def scenario():
        load = asyncio.create_task(fire(service.url, sentences(400, seed=11)))
        await asyncio.to_thread(wait_until, lambda: client.llen(inflight) > 0, 20, "the victim to hold a window",
                                0.001)
        victim.signal(signal.SIGTERM)  # while it holds a window
        return await load

    outcomes = asyncio.run(scenario())
    assert victim.wait(timeout=30) == 0, victim.output()[-2000:]
    output = victim.output()
    assert re.search(r"worker \S+ stopped after \d+ batches", output), output[-2000:]
    # It ran and published the window in hand: nothing given back to the queue, nothing left for a reaper.
    assert "back to the queue" not in output and client.exists(inflight) == 0
    assert_correct(outcomes, tiny_predictor)
    assert service.live_workers() == 1  # the survivor; the stopped worker withdrew its heartbeat
    assert not any("is dead" in w.output() for w in service.workers[1:])
    assert leftover_keys(service) == set()
    service.workers.remove(victim)  # the shared service goes on with 2 live workers, as it was
    replacement = service.start_worker("worker-3")
    wait_until(lambda: service.live_workers() == 2, 60, "the replacement to announce itself", 0.2)
    assert replacement.alive()


def test_metrics_and_probes_over_http(service):
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    metrics = httpx.get(f"{service.url}/metrics").text
    assert f'sentimentalyzer_requests_total{{model="{DEFAULT_MODEL_NAME}",route="/predict",status="200"}}' in metrics
    assert f"sentimentalyzer_live_workers{{{SERVED}}} 2.0" in metrics
    # BACKEND=auto (the default): each worker measured the installed backends and runs an exact one, the same
    # one (same model, CPU and settings: the second read the first one's decision). Heartbeat, /readyz and
    # /metrics say which.
    client = redis.Redis.from_url(service.redis_url)
    beats = [client.hgetall(service.keys.heartbeat(m.decode())) for m in client.hkeys(service.keys.workers)]
    assert {b[b"backend_setting"] for b in beats} == {b"auto"}
    backend, = {b[b"backend"].decode() for b in beats}
    assert backend in ("torch", "onnxruntime", "openvino")
    ready = httpx.get(f"{service.url}/readyz").json()
    assert ready["backends"] == {backend: 2}
    assert [(m["name"], m["version"], m["workers"]) for m in ready["models"]] == [(DEFAULT_MODEL_NAME, 1, 2)]
    assert f'sentimentalyzer_workers_by_backend{{backend="{backend}",{SERVED}}} 2.0' in metrics
    assert "sentimentalyzer_request_latency_seconds_bucket" in metrics
    # Batch histograms are cluster-wide (from Redis): as many passes as the workers counted.
    batches = int(redis.Redis.from_url(service.redis_url).hget(service.keys.stats, "batches"))
    assert f'sentimentalyzer_batch_texts_bucket{{le="+Inf",{SERVED}}} {float(batches)}' in metrics
    assert f"sentimentalyzer_batch_padding_ratio_count{{{SERVED}}} {float(batches)}" in metrics
    assert "sentimentalyzer_queue_wait_seconds_count" in metrics
