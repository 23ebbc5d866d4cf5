"""The API application: routes (api/routes.py), middleware, error handlers, and the Redis client, gateway and
cluster view its lifespan builds."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.cluster import ClusterView
from api.errors import install_error_handlers
from api.gateway import Gateway
from api.limits import BodySizeLimit
from api.metrics import ApiMetrics, RequestMetrics
from api.routes import Services, add_routes
from common.clock import RedisClock
from common.redis_factory import async_client
from common.settings import ApiSettings

# Connections beyond the waiters: probes, metrics and pushes must not queue behind blocking waits.
POOL_HEADROOM = 16
# How often an API process re-measures its clock's offset to Redis's (clocks drift slowly; NTP steps are rare).
CLOCK_SYNC_INTERVAL_S = 30.0

log = logging.getLogger(__name__)


async def keep_clock_in_sync(clock: RedisClock, client: redis.asyncio.Redis) -> None:
    """Deadlines are stamped on Redis's clock (common/clock.py): measure this host's offset now and then."""
    while True:
        try:
            await clock.sync_async(client.time)
        except redis.RedisError as exc:
            log.debug("could not read Redis's clock: %s", exc)  # the request path reports Redis outages
        await asyncio.sleep(CLOCK_SYNC_INTERVAL_S)


def create_app(settings: ApiSettings, client: redis.asyncio.Redis | None = None) -> FastAPI:
    """Build the API. ``client`` is for tests; by default the app opens (and closes) its own pool."""
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_client = client or async_client(
            settings, longest_block_s=settings.request_timeout_s,
            max_connections=settings.max_in_flight + POOL_HEADROOM,
        )
        keys = settings.keys()
        clock = RedisClock()
        gateway = Gateway(redis_client, keys, settings, on_enqueued=metrics.texts.inc, clock=clock)
        metrics.in_flight.set_function(lambda: gateway.in_flight)
        app.state.services = Services(gateway, ClusterView(redis_client, keys), metrics, settings.client_id_header)
        syncing = asyncio.create_task(keep_clock_in_sync(clock, redis_client))
        try:
            yield
        finally:
            syncing.cancel()
            if client is None:
                await redis_client.aclose()

    app = FastAPI(
        title="Sentimentalyzer",
        version="1.0.0",
        summary="Text classification with dynamic batching over Redis.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    add_routes(app, settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics,
                       routes={route.path for route in app.routes if isinstance(route, APIRoute)})
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): each API process builds its settings from the environment."""
    from common.logs import setup_logging

    settings = ApiSettings()
    setup_logging(settings.log_level, "api")
    app = create_app(settings)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Everything a server process has built by now (modules, the app, its routes and models) lives as long as the
    process: moved out of the garbage collector's sight, full collections stop walking it. Each request allocates a
    task (the disconnect watcher) and coroutines, which trigger collections; measured with benchmarks.overhead, the
    request path's CPU went from ~130 to ~113 us per /predict with it, the previous commit's figure."""
    gc.collect()
    gc.freeze()
