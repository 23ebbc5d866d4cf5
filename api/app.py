"""The HTTP layer: routes, validation, error mapping, metrics. Queueing lives in api.gateway."""

# No `from __future__ import annotations`: FastAPI must resolve the request models, which are built
# per app from the configured limits, from the route signatures at definition time.

import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ErrorKind, ServiceError, error_responses, install_error_handlers
from api.gateway import Gateway, Outcome, worker_error
from api.limits import BodySizeLimit
from api.metrics import ApiMetrics
from api.schemas import BatchPredictionOut, PredictionOut, request_models
from common.redis_factory import async_client
from common.settings import ApiSettings

log = logging.getLogger(__name__)

# Connections beyond the waiters: probes, metrics and pushes must not queue behind blocking waits.
POOL_HEADROOM = 16
PREDICT_ERRORS = (ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE, ErrorKind.UNAUTHORIZED, ErrorKind.OVERLOADED,
                  ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT, ErrorKind.WORKER_ERROR)


class RequestMetrics:
    """Pure ASGI middleware counting responses by route and status and timing them end to end."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def create_app(settings: ApiSettings, client: redis.asyncio.Redis | None = None) -> FastAPI:
    """Build the API. ``client`` is for tests; by default the app opens (and closes) its own pool."""
    metrics = ApiMetrics()
    models = request_models(settings)
    state: dict[str, Gateway] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        own = client is None
        redis_client = client or async_client(
            settings, longest_block_s=settings.request_timeout_s,
            max_connections=settings.max_in_flight + POOL_HEADROOM,
        )
        gw = state["gateway"] = Gateway(redis_client, settings.keys(), settings)
        # Read at scrape time from the gateway's own counters instead of being copied on every request.
        metrics.in_flight.set_function(lambda: gw.in_flight)
        metrics.queue_depth.set_function(lambda: gw.last_queue_depth)
        try:
            yield
        finally:
            if own:
                await redis_client.aclose()

    app = FastAPI(
        title="Sentimentalyzer",
        version="1.0.0",
        summary="Text classification with dynamic batching over Redis.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    bearer = HTTPBearer(auto_error=False)

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ServiceError(ErrorKind.UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer <key>)")

    def gateway() -> Gateway:
        return state["gateway"]

    def timing_headers(response: Response, outcome: Outcome) -> None:
        response.headers["X-Request-ID"] = outcome.request_id
        response.headers["X-Queue-Time"] = f"{outcome.queue_ms:.1f}"
        response.headers["X-Inference-Time"] = f"{outcome.inference_ms:.1f}"

    async def classify(texts: list[str], response: Response) -> list[PredictionOut]:
        outcome = await gateway().classify(texts)
        metrics.texts.inc(len(texts))
        for reply in outcome.replies:
            if reply.error is not None:
                raise worker_error(reply)
        metrics.queue_wait.observe(outcome.queue_ms / 1000)
        metrics.inference.observe(outcome.inference_ms / 1000)
        timing_headers(response, outcome)
        return [PredictionOut(label=r.prediction.label, score=r.prediction.score)  # type: ignore[union-attr]
                for r in outcome.replies]

    @app.post("/predict", response_model=PredictionOut, responses=error_responses(*PREDICT_ERRORS),
              dependencies=[Depends(authorized)], summary="Classify one text")
    async def predict(body: models.single, response: Response) -> PredictionOut:  # type: ignore[valid-type]
        return (await classify([body.text], response))[0]  # type: ignore[attr-defined]

    @app.post("/predict/batch", response_model=BatchPredictionOut, responses=error_responses(*PREDICT_ERRORS),
              dependencies=[Depends(authorized)], summary="Classify many texts (answers in input order)")
    async def predict_batch(body: models.batch, response: Response) -> BatchPredictionOut:  # type: ignore[valid-type]
        return BatchPredictionOut(results=await classify(body.texts, response))  # type: ignore[attr-defined]

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Redis reachable and at least one live worker",
             responses=error_responses(ErrorKind.UNAVAILABLE))
    async def readyz() -> JSONResponse:
        gw = gateway()
        workers = await gw.live_workers()
        metrics.live_workers.set(len(workers))
        if not workers:
            raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker (no heartbeat in Redis)", retry_after_s=1)
        return JSONResponse({"status": "ready", "workers": len(workers), "queue_depth": await gw.queue_depth()})

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(authorized)],
             summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        gw = gateway()
        try:
            await gw.queue_depth()  # refreshes gw.last_queue_depth, which the gauge reads
            metrics.live_workers.set(len(await gw.live_workers()))
            metrics.worker_stats.snapshot = await gw.worker_stats()
            metrics.batch_histograms.snapshot = await gw.batch_histograms()
        except ServiceError:
            pass  # Redis down: serve this process's own metrics; the gauges keep their last values
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics,
                       routes={"/predict", "/predict/batch", "/healthz", "/readyz", "/metrics"})
    app.state.metrics = metrics
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): each API process builds its settings from the environment."""
    from common.logs import setup_logging

    settings = ApiSettings()
    setup_logging(settings.log_level, "api")
    return create_app(settings)
