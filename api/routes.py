"""The HTTP routes. Each handler is a few lines: validation is FastAPI's (the request models), the work is the
gateway's (a request) or the cluster view's (probes, metrics), and every failure is a ``ServiceError`` that
api/errors.py turns into the documented status and error body."""

# No `from __future__ import annotations`: FastAPI must resolve the request models, which are built per app
# from the configured limits, from the route signatures at definition time.

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Message

from api.catalog import Catalog, ModelView
from api.cluster import ClusterView
from api.errors import ErrorKind, ServiceError, error_responses
from api.gateway import Gateway, Outcome
from api.info import InfoOut, info_of
from api.metrics import ApiMetrics
from api.queries import Job, answer, job_of
from api.schemas import BatchPredictionOut, PredictAnswer, RequestModels, request_models
from api.settings import ApiSettings
from common.options import top_k_refusal

T = TypeVar("T")

PREDICT_ERRORS = (ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE, ErrorKind.OVERLOADED, ErrorKind.UNAVAILABLE,
                  ErrorKind.TIMEOUT, ErrorKind.WORKER_ERROR)


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, built by the app's lifespan (api/app.py)."""

    gateway: Gateway
    cluster: ClusterView
    catalog: Catalog
    metrics: ApiMetrics
    settings: ApiSettings


def services(request: Request) -> Services:
    # Read straight from the app, not injected with Depends: FastAPI resolves every dependency on every request
    # (a plain `def` one in its thread pool: that alone cut the no-op ceiling by a quarter in a measurement).
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)


def authorization(api_key: str) -> Callable[..., Awaitable[None]]:
    """The dependency guarding prediction and metrics routes: ``Authorization: Bearer <API_KEY>``."""

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ServiceError(ErrorKind.UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer <key>)")

    return authorized


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` while the client stays connected. A client that hangs up first cancels it — its admission slot
    and Redis connection are freed at once, its queued texts skipped by workers (api/gateway.py) — and the request
    ends with 499 (nobody reads it).

    After the body has been read, the next ASGI message of a request is ``http.disconnect``: a watcher waits for it
    and cancels this task. One watcher task per request, no polling."""
    handler = asyncio.current_task()
    assert handler is not None
    hung_up = False

    def on_message(message: asyncio.Future[Message]) -> None:
        nonlocal hung_up
        if not message.cancelled() and message.exception() is None and message.result()["type"] == "http.disconnect":
            hung_up = True
            handler.cancel()

    watcher = asyncio.ensure_future(request.receive())
    watcher.add_done_callback(on_message)
    try:
        return await work
    except asyncio.CancelledError:
        if not hung_up:
            raise  # cancelled for another reason (shutdown): not ours to swallow
        handler.uncancel()
        raise ServiceError(ErrorKind.CLIENT_CLOSED, "the client closed the connection before the answer") from None
    finally:
        # Not cancelled: the server ends the pending receive itself once the response is complete (a cancelled
        # task would carry a CancelledError and its traceback, garbage the collector then has to find).
        watcher.remove_done_callback(on_message)


def client_of(request: Request, s: Services) -> str:
    """Who is asking, for the per-client share of the queue (api/admission.py)."""
    id_header = s.settings.client_id_header
    if id_header is not None and (named := request.headers.get(id_header)):
        return named.split(",", 1)[0].strip()
    return request.client.host if request.client else ""


async def run_job(s: Services, job: Job, request: Request) -> Outcome:
    """Answer ``job`` for the client of ``request`` (while it stays connected) and count it."""
    top_k = job.options.top_k
    if top_k is not None and top_k > 1 and (num_labels := s.catalog.view.num_labels) is not None and (
            why := top_k_refusal(job.options, num_labels)):
        raise ServiceError(ErrorKind.VALIDATION, why)  # the workers would refuse it too: no need to queue it
    outcome = await while_connected(request, s.gateway.classify(job.queries, client_of(request, s)))
    s.metrics.observe(outcome, len(job.queries), cache_on=s.settings.cache_ttl_s > 0)
    return outcome


def timing_headers(outcome: Outcome, started: float, cache_on: bool) -> dict[str, str]:
    """Where the time went, in milliseconds (text-embeddings-inference's header names), and the cache's verdict."""
    headers = {"X-Request-ID": outcome.request_id, "X-Queue-Time": f"{outcome.queue_ms:.1f}",
               "X-Inference-Time": f"{outcome.inference_ms:.1f}",
               "X-Total-Time": f"{(time.perf_counter() - started) * 1000:.1f}"}
    if cache_on:  # hit: every text of the request was answered from the cache
        headers["X-Cache"] = "hit" if outcome.cached == len(outcome.predictions) else "miss"
    return headers


async def classify(s: Services, job: Job, request: Request) -> JSONResponse:
    started = time.perf_counter()
    outcome = await run_job(s, job, request)
    return JSONResponse(answer(job, outcome.predictions),
                        headers=timing_headers(outcome, started, s.settings.cache_ttl_s > 0))


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def live_view(s: Services) -> ModelView:
    """The live workers' view, read now (ready means the model is known too: /info, top_k's limit, the cache key);
    503 without a live worker."""
    view = await s.catalog.refresh()
    if not view.workers:
        raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker (no heartbeat in Redis)", retry_after_s=1)
    return view


async def readyz(request: Request) -> JSONResponse:
    s = services(request)
    view = await live_view(s)
    return JSONResponse({"status": "ready", "workers": view.workers, "backends": view.backends,
                         "queue_depth": await s.cluster.queue_depth()})


async def info(request: Request) -> InfoOut:
    s = services(request)
    described = info_of(await s.catalog.refresh(), s.settings)
    if described is None:
        raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker has described its model yet", retry_after_s=1)
    return described


async def prometheus_metrics(request: Request) -> Response:
    s = services(request)
    try:
        s.metrics.cluster.snapshot = await s.cluster.snapshot()
    except ServiceError:
        pass  # Redis away: this process's own metrics, and the cluster's as last seen
    return Response(s.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def guard(settings: ApiSettings) -> list:
    """The dependencies of a route only API_KEY's holders may call. Without a key the routes carry no security
    dependency at all, so OpenAPI does not claim one."""
    return [Depends(authorization(settings.api_key))] if settings.api_key else []


def add_routes(app: FastAPI, settings: ApiSettings) -> RequestModels:
    """Every route, on the app itself: an included APIRouter adds a second layer of route matching to every
    request (FastAPI 0.165; seen in a profile of /predict). The prediction routes validate bodies with request
    models built from this app's limits, so that OpenAPI states them."""
    models = request_models(settings)
    auth_errors = (ErrorKind.UNAUTHORIZED,) if settings.api_key else ()
    predict_errors = (*PREDICT_ERRORS, *auth_errors)
    guarded = guard(settings)

    predict_doc = {200: {"description": "Ours: the top label, or with top_k the ranked labels; a batch (texts): "
                              "{results}; text-embeddings-inference's (inputs): every label ranked, a list per input "
                              "for a batch", "model": PredictAnswer}}

    @app.post("/predict", response_model=None, responses={**predict_doc, **error_responses(*predict_errors)},
              dependencies=guarded, summary="Classify a text, a pair or a batch (ours or TEI's shape)")
    async def predict(body: models.predict, request: Request) -> JSONResponse:  # type: ignore[valid-type]
        return await classify(services(request), job_of(body), request)

    @app.post("/predict/batch", response_model=None, dependencies=guarded,
              responses={200: {"model": BatchPredictionOut, "description": "One answer per text, in input order"},
                         **error_responses(*predict_errors)},
              summary="Classify many texts (answers in input order)")
    async def predict_batch(body: models.batch, request: Request) -> JSONResponse:  # type: ignore[valid-type]
        return await classify(services(request), job_of(body), request)

    app.add_api_route("/info", info, methods=["GET"], dependencies=guarded, response_model=InfoOut,
                      responses=error_responses(ErrorKind.UNAVAILABLE, *auth_errors),
                      summary="The model served (from the live workers), its labels and limits, the backends")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], responses=error_responses(ErrorKind.UNAVAILABLE),
                      summary="Redis reachable and at least one live worker")
    # The default (JSON) response class keeps the 401's documented media type right; the 200 is declared as text.
    metrics_ok = {200: {"description": "Prometheus text exposition format",
                        "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}}
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], dependencies=guarded,
                      responses={**metrics_ok, **error_responses(*auth_errors)}, summary="Prometheus metrics")
    return models
