"""The service's own routes, whatever the protocol: liveness and readiness probes (and text-embeddings-inference's
``GET /health``), ``GET /info`` (the model served, in text-embeddings-inference's fields and ours) and Prometheus
metrics."""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures at definition time.

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import ErrorKind, ServiceError, error_responses
from api.handling import live_view, services
from api.info import InfoOut, info_of


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    s = services(request)
    view = await live_view(s)
    return JSONResponse({"status": "ready", "workers": view.workers, "backends": view.backends,
                         "queue_depth": await s.cluster.queue_depth()})


async def health(request: Request) -> Response:
    """An empty 200 while a live worker can answer (what /readyz checks), else 503: text-embeddings-inference's
    health route, for its clients and probes."""
    await live_view(services(request))
    return Response()


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


def add_service_routes(app: FastAPI) -> None:
    """The routes, on the app itself (as the protocols' are: an included APIRouter costs every request a second
    layer of route matching)."""
    app.add_api_route("/info", info, methods=["GET"], response_model=InfoOut,
                      responses=error_responses(ErrorKind.UNAVAILABLE),
                      summary="The model served (from the live workers), its labels and limits, the backends")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], responses=error_responses(ErrorKind.UNAVAILABLE),
                      summary="Redis reachable and at least one live worker")
    app.add_api_route("/health", health, methods=["GET"], response_class=Response,
                      responses={200: {"description": "A live worker can answer (empty body)"},
                                 **error_responses(ErrorKind.UNAVAILABLE)},
                      summary="text-embeddings-inference's health check: 200 while a live worker can answer, else "
                              "503")
    # The 200 is Prometheus's text format (the handler's own Response), declared as such.
    metrics_ok = {200: {"description": "Prometheus text exposition format",
                        "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}}
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], responses=metrics_ok,
                      summary="Prometheus metrics")
