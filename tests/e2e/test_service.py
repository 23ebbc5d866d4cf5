"""Redis + API + 2 workers as real processes, over HTTP."""

import asyncio
import random
import signal
import time

import httpx
import redis

from harness.service import Service

WORDS = ("the film is good bad charming dull and a bit too long but its actors are wonderful terrible "
         "moving boring funny story plot ending music").split()


def sentences(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 3, 8, 20, 45, 90]))) for _ in range(n)]


async def fire(url: str, texts: list[str], *, batch_every: int = 5) -> list[tuple[list[str], httpx.Response]]:
    """Concurrent requests: most single /predict, every batch_every-th a /predict/batch of 3 texts."""
    limits = httpx.Limits(max_connections=len(texts), max_keepalive_connections=len(texts))
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
    for texts, response in outcomes:
        assert response.status_code == 200, response.text
        for text, got in zip(texts, results(response), strict=True):
            expected = predictor.predict([text])[0]  # in-process, one text at a time
            assert got["label"] == expected.label, text
            assert abs(got["score"] - expected.score) < 1e-4, text


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


def test_sigterm_to_a_worker_under_load_fails_no_request(service, tiny_predictor):
    victim = service.workers[0]

    async def scenario():
        load = asyncio.create_task(fire(service.url, sentences(400, seed=11)))  # under MAX_IN_FLIGHT (512)
        await asyncio.sleep(0.5)
        assert not load.done(), "the load must still be running when the worker is stopped"
        victim.signal(signal.SIGTERM)
        return await load

    outcomes = asyncio.run(scenario())
    assert victim.wait(timeout=30) == 0, victim.output()[-2000:]
    assert "finishing the batch in hand" in victim.output()
    assert_correct(outcomes, tiny_predictor)
    assert service.live_workers() == 1  # the survivor; the stopped worker withdrew its heartbeat
    assert leftover_keys(service) == set()
    replacement = service.start_worker("worker-3")
    deadline = time.monotonic() + 60
    while service.live_workers() != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.live_workers() == 2, replacement.output()[-2000:]


def test_metrics_and_probes_over_http(service):
    assert httpx.get(f"{service.url}/healthz").json() == {"status": "ok"}
    metrics = httpx.get(f"{service.url}/metrics").text
    assert 'sentimentalyzer_requests_total{route="/predict",status="200"}' in metrics
    assert "sentimentalyzer_live_workers 2.0" in metrics
    assert "sentimentalyzer_request_latency_seconds_bucket" in metrics
    # Batch histograms are cluster-wide (from Redis): as many passes as the workers counted.
    batches = int(redis.Redis.from_url(service.redis_url).hget(service.keys.stats, "batches"))
    assert f'sentimentalyzer_batch_texts_bucket{{le="+Inf"}} {float(batches)}' in metrics
    assert f"sentimentalyzer_batch_padding_ratio_count {float(batches)}" in metrics
    assert "sentimentalyzer_queue_wait_seconds_count" in metrics
