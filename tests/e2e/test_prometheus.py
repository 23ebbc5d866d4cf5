"""A real Prometheus (Debian's ``prometheus``) scrapes the running service under load; what it computes through its
HTTP API must agree with what the clients saw: request count and rate, latency quantile, queue depth, live workers,
batch sizes. Every query of the Grafana dashboard must evaluate there.

The worker is ``BACKEND=simulated`` (each pass sleeps 50 ms + 5 ms per text, no model): a user's choice for
measuring the queueing path, here so that load builds a queue and batches on 2 cores in a few seconds."""

import asyncio
import bisect
import statistics
import time

import httpx
import pytest

from api.metrics import LATENCY_BUCKETS
from common.keys import DEFAULT_MODEL_NAME
from harness.dashboard import concrete, panel_queries
from harness.prometheus import PrometheusServer, prometheus_binary
from tests.e2e.conftest import start_service
from tests.helpers import sentences, wait_until

pytestmark = pytest.mark.skipif(prometheus_binary() is None,
                                reason="prometheus not installed (apt-get install -y prometheus; .ci/run does)")

CLIENTS = 24
LOAD_S = 8.0
PREDICT_OK = f'sentimentalyzer_requests_total{{model="{DEFAULT_MODEL_NAME}",route="/predict",status="200"}}'


async def load(url: str, seconds: float) -> list[tuple[float, float]]:
    """CLIENTS clients each sending /predict back to back for ``seconds``: (completion time, latency) of each 200."""
    texts = sentences(200, seed=11)
    done: list[tuple[float, float]] = []
    stop = time.time() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async def one_client(k: int) -> None:
            i = k
            while time.time() < stop:
                started = time.perf_counter()
                r = await client.post("/predict", json={"text": texts[i % len(texts)]})
                assert r.status_code == 200, r.text
                done.append((time.time(), time.perf_counter() - started))
                i += CLIENTS

        await asyncio.gather(*(one_client(k) for k in range(CLIENTS)))
    return done


def bucket(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS, seconds)


def test_prometheus_computes_what_the_clients_saw_and_every_dashboard_query_evaluates(redis_server, tmp_path):
    svc = start_service(redis_server.url, "/no/model/needed", tmp_path, workers=1, BACKEND="simulated",
                        SIMULATED_BATCH_MS="50", SIMULATED_TEXT_MS="5")
    prometheus = None
    try:
        prometheus = PrometheusServer(f"{svc.url}/metrics", tmp_path / "prometheus")
        started = time.time()
        done = asyncio.run(load(svc.url, LOAD_S))
        ended = time.time()

        # Count: every answered request, once (waits for the first scrape after the load).
        wait_until(lambda: prometheus.query(f"sum({PREDICT_OK})")
                   and prometheus.value(f"sum({PREDICT_OK})") == len(done), 15, "a scrape after the load")
        # Rate over a window inside the load against the clients' own count of answers in that window.
        window_end = started + LOAD_S * 0.8
        window = 4
        client_rate = sum(1 for at, _ in done if window_end - window < at <= window_end) / window
        prom_rate = prometheus.value(f"sum(rate({PREDICT_OK}[{window}s]))", at=window_end)
        # Latency: the median of every request, from the buckets, in the clients' bucket or next to it (the client
        # adds its own HTTP time; the histogram interpolates within a bucket).
        client_p50 = statistics.median(latency for _, latency in done)
        prom_p50 = prometheus.value('histogram_quantile(0.5, sum by (le) '
                                    '(sentimentalyzer_request_latency_seconds_bucket{route="/predict"}))')
        depth_max = prometheus.value(f"max_over_time(sentimentalyzer_queue_depth[{int(ended - started) + 5}s])")
        workers = prometheus.value("sentimentalyzer_live_workers")
        batch_p50 = prometheus.value("histogram_quantile(0.5, sum by (le) (sentimentalyzer_batch_texts_bucket))")
        batch_mean = prometheus.value("sentimentalyzer_worker_texts_total / sentimentalyzer_worker_batches_total")
        print(f"\nPrometheus {prometheus.url}: {len(done)} answered in {ended - started:.1f} s; rate over {window} s "
              f"{prom_rate:.1f}/s vs clients {client_rate:.1f}/s; p50 {prom_p50 * 1000:.0f} ms vs clients "
              f"{client_p50 * 1000:.0f} ms; queue depth max {depth_max:.0f}; live workers {workers:.0f}; texts per "
              f"pass p50 {batch_p50:.1f}, mean {batch_mean:.1f}")
        assert 0.6 * client_rate <= prom_rate <= 1.4 * client_rate
        assert abs(bucket(prom_p50) - bucket(client_p50)) <= 1
        assert 0 < depth_max <= CLIENTS  # a queue built while passes ran; never more than the clients waiting
        assert workers == 1
        assert 2 <= batch_p50 <= CLIENTS and 2 <= batch_mean <= CLIENTS  # batches grew with load

        # Every dashboard query is valid PromQL that Prometheus evaluates, and shows data (but the refusals, of
        # which this healthy run had none).
        for query in panel_queries():
            result = prometheus.query(concrete(query.expr, "5s"), at=window_end)  # All models
            assert result or "429" in query.expr, f"{query.panel}: {query.expr} returned no series"
    finally:
        if prometheus is not None:
            prometheus.stop()
        svc.stop()
