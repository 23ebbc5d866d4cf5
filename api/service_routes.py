"""The service's own routes, whatever the protocol: liveness and readiness probes (and text-embeddings-inference's
``GET /health``), ``GET /info`` (the model served, in text-embeddings-inference's fields and ours) and Prometheus
metrics."""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures at definition time.

import asyncio
from collections import Counter

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.errors import ErrorKind, ServiceError, error_responses
from api.handling import live_version, services
from api.info import InfoOut, info_of

INFO_MODEL_HELP = ("The served model to describe (SERVED_MODEL_NAME of its workers), at the version its unpinned "
                   "requests go to now; absent: the API's default model.")


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> JSONResponse:
    """Ready while any model has a live worker: one model's workers being down must not take the API tier, and so
    the other models, out of a load balancer. Per model: ``models``, and /v2/models/<name>/ready."""
    s = services(request)
    await s.models.refresh()
    live = [v for v in s.models.all_versions() if v.live]
    if not live:
        raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker (no heartbeat in Redis)", retry_after_s=1)
    await live[0].gateway.sync_clock()  # one clock for all
    depths = await asyncio.gather(*(v.cluster.queue_depth() for v in live))
    backends: Counter[str] = Counter()
    for version in live:
        backends.update(version.catalog.view.backends)
    return JSONResponse({
        "status": "ready", "workers": sum(v.catalog.view.workers for v in live),
        "backends": dict(sorted(backends.items())), "queue_depth": sum(depths),
        "models": [{"name": v.name, "version": v.version, "workers": v.catalog.view.workers, "queue_depth": depth}
                   for v, depth in zip(live, depths)]})


async def health(request: Request) -> Response:
    """An empty 200 while a live worker of the default model can answer, else 503: text-embeddings-inference's
    health route (its bodies name no model), for its clients and probes."""
    await live_version(services(request))
    return Response()


async def info(request: Request, model: str | None = Query(None, description=INFO_MODEL_HELP)) -> InfoOut:
    s = services(request)
    served = await live_version(s, model)
    described = info_of(served.catalog.view, s.settings, served.name, served.version)
    if described is None:
        raise ServiceError(ErrorKind.UNAVAILABLE, "no live worker has described its model yet", retry_after_s=1)
    return described


async def prometheus_metrics(request: Request) -> Response:
    s = services(request)
    try:
        await s.models.refresh()
        versions = list(s.models.all_versions())
        snapshots = await asyncio.gather(*(v.cluster.snapshot() for v in versions))
        s.metrics.cluster.snapshots = {(v.name, v.version): snap for v, snap in zip(versions, snapshots)}
    except ServiceError:
        pass  # Redis away: this process's own metrics, and the cluster's as last seen
    return Response(s.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def add_service_routes(app: FastAPI) -> None:
    """The routes, on the app itself (as the protocols' are: an included APIRouter costs every request a second
    layer of route matching)."""
    app.add_api_route("/info", info, methods=["GET"], response_model=InfoOut,
                      responses=error_responses(ErrorKind.UNAVAILABLE, ErrorKind.NOT_FOUND),
                      summary="The model served (from the live workers), its labels and limits, the backends")
    app.add_api_route("/healthz", healthz, methods=["GET"], summary="The process is alive")
    app.add_api_route("/readyz", readyz, methods=["GET"], responses=error_responses(ErrorKind.UNAVAILABLE),
                      summary="Redis reachable and a live worker of at least one model")
    app.add_api_route("/health", health, methods=["GET"], response_class=Response,
                      responses={200: {"description": "A live worker of the default model can answer (empty body)"},
                                 **error_responses(ErrorKind.UNAVAILABLE)},
                      summary="text-embeddings-inference's health check: 200 while a live worker can answer, else "
                              "503")
    # The 200 is Prometheus's text format (the handler's own Response), declared as such.
    metrics_ok = {200: {"description": "Prometheus text exposition format",
                        "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}}
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], responses=metrics_ok,
                      summary="Prometheus metrics")
