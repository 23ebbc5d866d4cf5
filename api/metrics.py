"""Prometheus metrics of one API process, plus the cluster-wide worker counters kept in Redis."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

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
        self.worker_stats = WorkerStatsCollector()
        self.registry.register(self.worker_stats)  # type: ignore[arg-type]
