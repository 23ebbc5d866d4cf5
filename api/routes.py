"""The HTTP routes. Each handler is a few lines: validation is FastAPI's (the request models), the work is the
gateway's (a request) or the cluster view's (probes, metrics), and every failure is a ``ServiceError`` that
api/errors.py turns into the documented status and error body."""

# No `from __future__ import annotations`: FastAPI must resolve the request models, which are built per app
# from the configured limits, from the route signatures at definition time.

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.cluster import ClusterView
from api.errors import ErrorKind, ServiceError, error_responses
from api.gateway import Gateway
from api.metrics import ApiMetrics
from api.schemas import BatchPredictionOut, PredictionOut, request_models
from common.settings import ApiSettings

PREDICT_ERRORS = (ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE, ErrorKind.UNAUTHORIZED, ErrorKind.OVERLOADED,
                  ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT, ErrorKind.WORKER_ERROR)


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, built by the app's lifespan (api/app.py)."""

    gateway: Gateway
    cluster: ClusterView
    metrics: ApiMetrics


def services(request: Request) -> Services:
    # Read straight from the app, not injected with Depends: FastAPI resolves every dependency on every request
    # (a plain `def` one in its thread pool: that alone cut the no-op ceiling by a quarter in a measurement).
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False)


def authorization(api_key: str | None) -> Callable[..., Awaitable[None]]:
    """The dependency guarding prediction and metrics routes: ``Authorization: Bearer <API_KEY>`` when a key is
    set, nothing otherwise."""

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ServiceError(ErrorKind.UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer <key>)")

    return authorized


async def classify(s: Services, texts: list[str], response: Response) -> list[PredictionOut]:
    outcome = await s.gateway.classify(texts)
    s.metrics.queue_wait.observe(outcome.queue_ms / 1000)
    s.metrics.inference.observe(outcome.inference_ms / 1000)
    response.headers["X-Request-ID"] = outcome.request_id
    response.headers["X-Queue-Time"] = f"{outcome.queue_ms:.1f}"
    response.headers["X-Inference-Time"] = f"{outcome.inference_ms:.1f}"
    return [PredictionOut(label=p.label, score=p.score) for p in outcome.predictions]


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    s = services(request)
    workers = await s.cluster.live_workers()
    if not workers:
        raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker (no heartbeat in Redis)", retry_after_s=1)
    return JSONResponse({"status": "ready", "workers": len(workers), "queue_depth": await s.cluster.queue_depth()})


async def prometheus_metrics(request: Request) -> Response:
    s = services(request)
    try:
        s.metrics.cluster.snapshot = await s.cluster.snapshot()
    except ServiceError:
        pass  # Redis away: this process's own metrics, and the cluster's as last seen
    return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def add_routes(app: FastAPI, settings: ApiSettings) -> None:
    """Every route, on the app itself: an included APIRouter adds a second layer of route matching to every
    request (FastAPI 0.165; seen in a profile of /predict). The prediction routes validate bodies with request
    models built from this app's limits, so that OpenAPI states them."""
    models = request_models(settings)
    guarded = [Depends(authorization(settings.api_key))]

    @app.post("/predict", response_model=PredictionOut, responses=error_responses(*PREDICT_ERRORS),
              dependencies=guarded, summary="Classify one text")
    async def predict(body: models.single, request: Request,  # type: ignore[valid-type]
                      response: Response) -> PredictionOut:
        texts = [body.text]  # type: ignore[attr-defined]
        return (await classify(services(request), texts, response))[0]

    @app.post("/predict/batch", response_model=BatchPredictionOut, responses=error_responses(*PREDICT_ERRORS),
              dependencies=guarded, summary="Classify many texts (answers in input order)")
    async def predict_batch(body: models.batch, request: Request,  # type: ignore[valid-type]
                            response: Response) -> BatchPredictionOut:
        texts = body.texts  # type: ignore[attr-defined]
        return BatchPredictionOut(results=await classify(services(request), texts, response))

    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], responses=error_responses(ErrorKind.UNAVAILABLE),
                      summary="Redis reachable and at least one live worker")
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], response_class=PlainTextResponse,
                      dependencies=guarded, summary="Prometheus metrics")
