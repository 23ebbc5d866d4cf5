"""Prometheus metrics of the API tier, plus the cluster's (queue, workers, their counters and batch histograms) as
last read from Redis.

With several API processes on one port (``API_PROCESSES`` > 1) a scrape lands on any one of them, so each keeps its
counters and histograms in prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, which
``python -m api`` sets up; the library reads it when it is imported) and a scrape answers with their sum over all
the tier's processes, those restarted included: one scrape, the whole tier, no resets for ``rate()``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access import NOTE_KEY, REQUEST_ID_HEADER, AccessLog, RequestNote, client_request_id
from api.cluster import ClusterSnapshot
from api.errors import OIP_PREFIX
from api.gateway import Outcome
from common.batch_metrics import BATCH_HISTOGRAMS, SUM_FIELD, cumulative_buckets
from common.counters import COUNTER_HELP

# The cluster's metrics are per model version (api/models.py); the API tier's own, per model.
CLUSTER_LABELS = ["model", "version"]
MODEL_LABEL = "model"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0, 20.0, 30.0)


class ClusterCollector:
    """Exposes the last ``ClusterSnapshot`` of each model version at scrape time, labelled ``model`` and
    ``version``. The ``/metrics`` route refreshes them first; while Redis is away the last values stay."""

    def __init__(self) -> None:
        self.snapshots: dict[tuple[str, int], ClusterSnapshot] = {}

    def collect(self) -> Iterable[Metric]:
        snaps = [((model, str(version)), snap) for (model, version), snap in sorted(self.snapshots.items())]

        def gauge(name: str, help_text: str, value: Callable[[ClusterSnapshot], float]) -> Metric:
            family = GaugeMetricFamily(name, help_text, labels=CLUSTER_LABELS)
            for labels, snap in snaps:
                family.add_metric(labels, value(snap))
            return family

        yield gauge("sentimentalyzer_queue_depth", "Pending texts in the model version's request list (Redis LLEN)",
                    lambda snap: snap.queue_depth)
        yield gauge("sentimentalyzer_live_workers", "Workers that beat and make progress",
                    lambda snap: snap.live_workers)
        backends = GaugeMetricFamily("sentimentalyzer_workers_by_backend",
                                     "Live workers per backend they run (BACKEND=auto: the one each chose)",
                                     labels=[*CLUSTER_LABELS, "backend"])
        for labels, snap in snaps:
            for backend, count in snap.backends.items():
                backends.add_metric([*labels, backend], count)
        yield backends
        yield gauge("sentimentalyzer_stalled_workers", "Workers holding work past their lease (frozen, hung or "
                    "starved; their work is being taken back)", lambda snap: snap.stalled_workers)
        for name, help_text in COUNTER_HELP.items():
            counter = CounterMetricFamily(f"sentimentalyzer_worker_{name}", f"{help_text}, all workers (from Redis)",
                                          labels=CLUSTER_LABELS)
            for labels, snap in snaps:
                counter.add_metric(labels, float(snap.worker_counts.get(name, 0)))
            yield counter
        for spec in BATCH_HISTOGRAMS:
            histogram = HistogramMetricFamily(f"sentimentalyzer_{spec.name}", f"{spec.help} (all workers, from Redis)",
                                              labels=CLUSTER_LABELS)
            for labels, snap in snaps:
                counts = snap.batch_histograms.get(spec.name, {})
                buckets = [(floatToGoString(bound), count) for bound, count in cumulative_buckets(spec, counts)]
                histogram.add_metric(labels, buckets, sum_value=float(counts.get(SUM_FIELD, 0.0)))
            yield histogram


class ApiMetrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: where this tier's processes keep their values (PROMETHEUS_MULTIPROC_DIR), if the
        tier has several; None: this process's values only."""
        self.registry = CollectorRegistry()
        self.requests = Counter("sentimentalyzer_requests", "HTTP requests by route and status",
                                ["route", "status", MODEL_LABEL], registry=self.registry)
        self.latency = Histogram("sentimentalyzer_request_latency_seconds", "End-to-end request latency",
                                 ["route", MODEL_LABEL], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("sentimentalyzer_texts", "Texts enqueued by this process", [MODEL_LABEL],
                             registry=self.registry)
        # Several processes: their sum, the live ones only (a dead process waits on nothing).
        self.in_flight = Gauge("sentimentalyzer_in_flight", "Requests the API processes are waiting on",
                               [MODEL_LABEL, "version"], multiprocess_mode="livesum", registry=self.registry)
        # Per request, from the replies: time spent queued (enqueue -> picked up by a worker) vs in the model.
        # Their sum against sentimentalyzer_request_latency_seconds shows what the HTTP + Redis path adds.
        self.queue_wait = Histogram("sentimentalyzer_queue_wait_seconds",
                                    "Per request: enqueue to pick-up by a worker (slowest text of the request)",
                                    [MODEL_LABEL], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("sentimentalyzer_inference_seconds",
                                   "Per request: the forward pass(es) that answered it (slowest text of the request)",
                                   [MODEL_LABEL], buckets=LATENCY_BUCKETS, registry=self.registry)
        # The response cache (CACHE_TTL_S > 0), in texts: hits answered from it, misses sent to the workers.
        self.cache_hits = Counter("sentimentalyzer_cache_hits", "Texts answered from the response cache",
                                  [MODEL_LABEL], registry=self.registry)
        self.cache_misses = Counter("sentimentalyzer_cache_misses", "Texts the response cache did not hold (sent to "
                                    "the workers)", [MODEL_LABEL], registry=self.registry)
        self.cache_errors = Counter("sentimentalyzer_cache_errors", "Response-cache reads or writes that failed "
                                    "(the texts went to the workers)", [MODEL_LABEL], registry=self.registry)
        self._children: dict[tuple[Any, ...], Any] = {}  # child(): each labelled series, by its labels
        self.cluster = ClusterCollector()
        self.registry.register(self.cluster)  # type: ignore[arg-type]
        # What a scrape answers: this process's registry, or every process's files plus the cluster (the same from
        # any process: read from Redis).
        self._scraped = self.registry
        if multiprocess_dir is not None:
            self._scraped = CollectorRegistry()
            MultiProcessCollector(self._scraped, path=str(multiprocess_dir))
            self._scraped.register(self.cluster)  # type: ignore[arg-type]

    def add_model(self, model: str) -> None:
        """Give ``model`` its series of the per-model counters at zero (a counter with labels has no series until
        first counted: a dashboard's rate() of it would show nothing rather than 0)."""
        for counter in (self.texts, self.cache_hits, self.cache_misses, self.cache_errors):
            self.child(counter, model)

    def exposition(self) -> bytes:
        """The text a scrape of ``/metrics`` gets."""
        return generate_latest(self._scraped)

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: prometheus-client's ``labels`` validates and takes a lock
        each call, a few microseconds, four times a request. Label values are routes, statuses and served names
        (never what a client made up), so the cache stays small."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe(self, outcome: Outcome, texts: int, model: str, *, cache_on: bool) -> None:
        """Count one answered request of ``texts`` texts for ``model``."""
        if cache_on:
            self.child(self.cache_hits, model).inc(outcome.cached)
            self.child(self.cache_misses, model).inc(texts - outcome.cached)
        if outcome.cached < texts:  # something was queued: where its time went
            self.child(self.queue_wait, model).observe(outcome.queue_ms / 1000)
            self.child(self.inference, model).observe(outcome.inference_ms / 1000)


# A path of the /v2 model routes: /v2/models/<name>[/versions/<v>][/ready|/config|/infer].
_MODEL_PATH = re.compile(rf"^{OIP_PREFIX}/models/[^/]+(?P<versioned>/versions/[^/]+)?(?P<rest>/[a-z]+)?$")


class RequestMetrics:
    """Pure ASGI middleware counting responses by route and status and timing them end to end; it also gives every
    response its X-Request-ID and, with ``access_log``, writes each request's access line (api/access.py): one
    wrapper sees each request's start and end for all three."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: set[str],
                 access_log: AccessLog | None = None) -> None:
        """``routes``: the paths counted by name (the rest: "other"), the /v2 model routes as their templates."""
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.access_log = access_log

    def _model_route(self, path: str) -> str:
        """A /v2 model route's template (its model is the ``model`` label), or "other"."""
        found = _MODEL_PATH.match(path)
        if found is None:
            return "other"
        template = f"{OIP_PREFIX}/models/{{model}}{'/versions/{version}' if found['versioned'] else ''}{found['rest']}"
        return template if template in self.routes else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else self._model_route(path)
        started = time.perf_counter()
        status = 500
        note = scope[NOTE_KEY] = RequestNote(client_request_id(scope["headers"]))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, note.public_id().encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            # The model a request was routed to (never a name a client made up: api/handling.py).
            metrics = self.metrics
            metrics.child(metrics.requests, route, str(status), note.model).inc()
            metrics.child(metrics.latency, route, note.model).observe(elapsed)
            if self.access_log is not None:
                self.access_log(scope, note, status, elapsed)
