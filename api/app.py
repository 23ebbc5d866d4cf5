"""The API application, wired: the protocols' routes (api/protocols/) and the service's own (api/service_routes.py),
middleware, error handlers, and the Redis client, gateway, response cache, cluster view and model catalog its
lifespan builds."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import redis.asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from api.access import AccessLog
from api.auth import RequireApiKey, document_api_key
from api.cache import ResponseCache
from api.catalog import Catalog
from api.cluster import ClusterView
from api.cors import allow_origins
from api.encoding import GzipResponses
from api.errors import install_error_handlers
from api.gateway import Gateway
from api.handling import PREDICT_ERRORS, Services, classify
from api.info import API_VERSION, with_top_k_limit
from api.limits import BodySizeLimit
from api.metrics import ApiMetrics, RequestMetrics
from api.models import ModelRouter, ModelVersion
from api.protocols import PROTOCOLS, request_models
from api.protocols.predict import add_body_routes
from api.service_routes import add_service_routes
from api.settings import ApiSettings
from common.clock import RedisClock
from common.keys import Keys
from common.redis_factory import async_client, async_waiting_client
from common.tracing import tracer_provider_from_env

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# Tracing off: FastAPI's own telemetry off too, so that no request even asks whether a provider is configured.
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}

# Connections beyond the waiters: probes, metrics and pushes must not queue behind blocking waits.
POOL_HEADROOM = 16
# How often an API process re-measures its clock's offset to Redis's (clocks drift slowly; NTP steps are rare).
CLOCK_SYNC_INTERVAL_S = 30.0
# Until the first measurement succeeds (Redis away at start), tried this often, so that it follows Redis's return
# within a second even with no traffic (requests and /readyz measure first too: api/gateway.py). One TIME per try.
CLOCK_FIRST_SYNC_RETRY_S = 0.5

log = logging.getLogger(__name__)

TraceContext = Callable[[], "str | None"]


async def keep_clock_in_sync(clock: RedisClock, client: redis.asyncio.Redis) -> None:
    """Deadlines are stamped on Redis's clock (common/clock.py): measure this host's offset now and then, and
    until a first measurement succeeded, soon again."""
    while True:
        try:
            await clock.sync_async(client.time)
        except redis.RedisError as exc:
            log.debug("could not read Redis's clock: %s", exc)  # the request path reports Redis outages
        await asyncio.sleep(CLOCK_SYNC_INTERVAL_S if clock.synced else CLOCK_FIRST_SYNC_RETRY_S)


def create_app(settings: ApiSettings, client: redis.asyncio.Redis | None = None,
               cache_client: redis.asyncio.Redis | None = None,
               tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build the API. ``client`` (and ``cache_client``, the response cache's) are for tests; by default the app
    opens (and closes) its own pools. ``tracer_provider``: trace requests (None: tracing off, nothing of it on the
    request path)."""
    metrics = ApiMetrics(settings.prometheus_multiproc_dir)
    trace_context, telemetry = _tracing(tracer_provider)
    # /docs and /redoc from Swagger UI's and ReDoc's assets served by the API itself (fastapi-offline's copies,
    # under /static-offline-docs), not from a CDN: the pages work without internet access.
    app = FastAPIOffline(
        title="Sentimentalyzer",
        version=API_VERSION,
        summary="Text classification with dynamic batching over Redis. Speaks the Hugging Face pipeline's options, "
                "text-embeddings-inference's /predict and /info, and the Open Inference Protocol (/v2).",
        lifespan=_lifespan(settings, metrics, client, cache_client, trace_context),
        telemetry=telemetry,
    )
    add_routes(app, settings)
    _state_top_k_limit(app, settings.api_key is not None)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(GzipResponses)
    if settings.api_key is not None:  # outside the body's limits and decoding, inside CORS and the access log
        app.add_middleware(RequireApiKey, api_key=settings.api_key)
    allow_origins(app, settings.cors_allow_origins)  # outside the others: their refusals carry CORS headers too
    app.add_middleware(RequestMetrics, metrics=metrics, routes=metric_routes(app),
                       access_log=AccessLog(settings.client_id_header, settings.trusted_proxy_hops)
                       if settings.access_log else None)
    return app


def _tracing(tracer_provider: TracerProvider | None) -> tuple[TraceContext | None, dict[str, Any]]:
    """How requests are traced: the traceparent to hand the workers, and FastAPI's telemetry (none without a
    provider: tracing's modules are then not even imported)."""
    if tracer_provider is None:
        return None, NO_TELEMETRY
    from api.tracing import current_traceparent, telemetry

    return current_traceparent, telemetry(tracer_provider)


def _lifespan(settings: ApiSettings, metrics: ApiMetrics, client: redis.asyncio.Redis | None,
              cache_client: redis.asyncio.Redis | None,
              trace_context: TraceContext | None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What each server process builds at start-up (the pools belong to its event loop) and ends at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_client = client or async_client(
            settings, longest_block_s=settings.request_timeout_s,
            max_connections=settings.max_in_flight + POOL_HEADROOM,
        )
        own_cache_client = cache_client is None and settings.cache_ttl_s > 0 and settings.cache_redis_url is not None
        cache_redis = cache_client or (async_client(settings, longest_block_s=0, max_connections=settings.max_in_flight
                                                    + POOL_HEADROOM, url=settings.cache_redis_url)
                                       if own_cache_client else redis_client)
        clock = RedisClock()

        def waiting() -> redis.asyncio.Redis | None:
            """A model version's own pool for its requests' pushes and waits (api/models.py), as many connections as
            requests it admits at once; None: with a client given (tests), that one."""
            return async_waiting_client(settings, max_connections=settings.max_in_flight) if client is None else None

        app.state.services = s = _services(settings, metrics, redis_client, cache_redis, waiting, clock,
                                           trace_context)
        background = [asyncio.create_task(keep_clock_in_sync(clock, redis_client)),
                      asyncio.create_task(s.models.keep_fresh())]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await s.models.aclose()
            if client is None:
                await redis_client.aclose()
            if own_cache_client:
                await cache_redis.aclose()

    return lifespan


def _services(settings: ApiSettings, metrics: ApiMetrics, redis_client: redis.asyncio.Redis,
              cache_redis: redis.asyncio.Redis, waiting: Callable[[], redis.asyncio.Redis | None], clock: RedisClock,
              trace_context: TraceContext | None) -> Services:
    """The routes' services: the models, each version with its gateway, cluster view, catalog and cache."""

    def build(name: str, version: int, keys: Keys) -> ModelVersion:
        metrics.add_model(name)
        cluster = ClusterView(redis_client, keys)
        catalog = Catalog(cluster)
        child = metrics.child
        cache = (ResponseCache(cache_redis, keys, settings.cache_ttl_s, on_error=child(metrics.cache_errors, name).inc)
                 if settings.cache_ttl_s > 0 else None)
        pool = waiting()
        gateway = Gateway(redis_client, keys, settings, on_enqueued=child(metrics.texts, name).inc,
                          on_in_flight=child(metrics.in_flight, name, str(version)).set, clock=clock, cache=cache,
                          answers=lambda: catalog.view.answers, trace_context=trace_context, waiting=pool)
        return ModelVersion(name, version, keys, gateway, cluster, catalog, pool)

    models = ModelRouter(redis_client, settings.keys(), settings.served_model_name, build)
    return Services(models, metrics, settings)


def add_routes(app: FastAPI, settings: ApiSettings) -> None:
    """Every route, and the error handlers that answer for them. The protocols' request models are built from this
    app's limits, so that OpenAPI states them."""
    models = request_models(settings)
    install_error_handlers(app, shape_keys=tuple(models.shapes))
    add_body_routes(app, models, classify, errors=PREDICT_ERRORS)  # API_KEY: api/auth.py
    add_service_routes(app)
    for protocol in PROTOCOLS:
        if protocol.add_routes is not None:
            protocol.add_routes(app, settings)


def _state_top_k_limit(app: FastAPI, api_key: bool) -> None:
    """The OpenAPI document with top_k's limit: the default model's labels, known once a worker has described it;
    with ``api_key``, the key's requirement on every route it guards (api/auth.py)."""
    generated = app.openapi  # FastAPI's, built once and cached
    stated: list[dict[str, Any]] = []  # FastAPI's document, with the key stated once

    def openapi() -> dict[str, Any]:
        if not stated:
            document = generated()
            if api_key:
                document_api_key(document)
            stated.append(document)
        services = getattr(app.state, "services", None)  # set by the lifespan
        default = services.models.routed() if services else None  # the model of the bodies that name none
        return with_top_k_limit(stated[0], default.catalog.view.num_labels if default else None)

    app.openapi = openapi  # type: ignore[method-assign]


def metric_routes(app: FastAPI) -> set[str]:
    """The paths /metrics counts by name (others are "other"): every route's, the /v2 model routes as templates."""
    return {route.path for route in app.routes if isinstance(route, APIRoute)}


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): each API process builds its settings from the environment."""
    from common.logs import setup_logging

    settings = ApiSettings()
    setup_logging(settings.log_level, "api", settings.log_format)
    app = create_app(settings, tracer_provider=tracer_provider_from_env("sentimentalyzer-api"))
    freeze_startup_heap()
    return app


# The collector's thresholds in a server process (Python's defaults: 700, 10, 10). A request allocates a few hundred
# tracked objects (coroutines, tasks, dicts) and a loaded API holds a hundred requests in flight, so at the default
# every few requests a young-generation collection walks all the in-flight requests' objects and soon promotes them,
# which brings older collections. Measured served (benchmarks.api_cpu: a torch-bf16 worker, wrk with 100
# connections, AMX Xeon, 2 cores): 548 -> 499 us of the API process's CPU per request, e5def37 -> c278465. The cost:
# cyclic garbage waits for up to 20,000 allocations before it is freed (a few MB at most).
GC_THRESHOLDS = (20_000, 50, 100)


def freeze_startup_heap() -> None:
    """Everything a server process has built by now (modules, the app, its routes and models) lives as long as the
    process: moved out of the garbage collector's sight, full collections stop walking it. Each request allocates a
    task (the disconnect watcher) and coroutines, which trigger collections; measured with benchmarks.overhead, the
    request path's CPU went from ~130 to ~113 us per /predict with it. Then collections are made rarer
    (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
