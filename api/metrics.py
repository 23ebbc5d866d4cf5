"""Prometheus metrics of one API process, plus the cluster-wide worker counters kept in Redis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from common.batch_metrics import BATCH_HISTOGRAMS, SUM_FIELD, cumulative_buckets

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0, 20.0, 30.0)
WORKER_COUNTERS = ("batches", "texts", "expired", "malformed", "failed")


class WorkerStatsCollector:
    """Exposes the Redis ``stats`` hash (written by workers at batch boundaries) at scrape time."""

    def __init__(self) -> None:
        self.snapshot: Mapping[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        for name in WORKER_COUNTERS:
            family = CounterMetricFamily(f"sentimentalyzer_worker_{name}", f"Worker {name}, all workers (from Redis)")
            family.add_metric([], float(self.snapshot.get(name, 0)))
            yield family


class BatchHistogramCollector:
    """Exposes the batch histograms workers keep in Redis (common/batch_metrics.py) at scrape time: one
    cluster-wide view, whichever API process is scraped."""

    def __init__(self) -> None:
        self.snapshot: Mapping[str, Mapping[str, float]] = {}

    def collect(self) -> Iterable[Metric]:
        for spec in BATCH_HISTOGRAMS:
            counts = self.snapshot.get(spec.name, {})
            buckets = [(floatToGoString(bound), count) for bound, count in cumulative_buckets(spec, counts)]
            yield HistogramMetricFamily(f"sentimentalyzer_{spec.name}", f"{spec.help} (all workers, from Redis)",
                                        buckets=buckets, sum_value=float(counts.get(SUM_FIELD, 0.0)))


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sentimentalyzer_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("sentimentalyzer_request_latency_seconds", "End-to-end request latency",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("sentimentalyzer_texts", "Texts enqueued by this process", registry=self.registry)
        self.queue_depth = Gauge("sentimentalyzer_queue_depth", "Pending texts in the request list (Redis LLEN)",
                                 registry=self.registry)
        self.in_flight = Gauge("sentimentalyzer_in_flight", "Requests this process is waiting on",
                               registry=self.registry)
        self.live_workers = Gauge("sentimentalyzer_live_workers", "Workers with a live heartbeat",
                                  registry=self.registry)
        # Per request, from the replies: time spent queued (enqueue -> picked up by a worker) vs in the model.
        # Their sum against sentimentalyzer_request_latency_seconds shows what the HTTP + Redis path adds.
        self.queue_wait = Histogram("sentimentalyzer_queue_wait_seconds",
                                    "Per request: enqueue to pick-up by a worker (slowest text of the request)",
                                    buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("sentimentalyzer_inference_seconds",
                                   "Per request: the forward pass(es) that answered it (slowest text of the request)",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.worker_stats = WorkerStatsCollector()
        self.registry.register(self.worker_stats)  # type: ignore[arg-type]
        self.batch_histograms = BatchHistogramCollector()
        self.registry.register(self.batch_histograms)  # type: ignore[arg-type]
