"""What every route of the API shares, whatever its protocol: the services the lifespan built, running a job
through the queue while the client stays connected, the timing headers, the live workers' view. (API_KEY is checked
before any route: api/auth.py.) Validation is FastAPI's (the protocols' request models), the work is the gateway's,
and every failure is a ``ServiceError`` that api/errors.py turns into the documented status and error body."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import Message

from api.access import client_identity, identity_header, note_of
from api.errors import ErrorKind, ServiceError
from api.gateway import Outcome
from api.metrics import ApiMetrics
from api.models import ModelRouter, ModelVersion
from api.settings import ApiSettings
from common.options import top_k_refusal
from common.protocol import new_request_id

if TYPE_CHECKING:
    # For the annotations only: importing api.protocols runs its __init__, which registers the protocols, which
    # stand on this module.
    from api.protocols.spec import Job

T = TypeVar("T")

# What a prediction route can fail with (documented in OpenAPI; a missing API key's 401: api/auth.py); 404: a model
# never served (api/models.py).
PREDICT_ERRORS = (ErrorKind.VALIDATION, ErrorKind.PAYLOAD_TOO_LARGE, ErrorKind.UNSUPPORTED_MEDIA_TYPE,
                  ErrorKind.NOT_FOUND, ErrorKind.OVERLOADED, ErrorKind.UNAVAILABLE, ErrorKind.TIMEOUT,
                  ErrorKind.WORKER_ERROR)


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes use, built by the app's lifespan (api/app.py)."""

    models: ModelRouter  # each served model version with its gateway, cluster view and catalog
    metrics: ApiMetrics
    settings: ApiSettings


def services(request: Request) -> Services:
    # Read straight from the app, not injected with Depends: FastAPI resolves every dependency on every request
    # (a plain `def` one in its thread pool: that alone cut the no-op ceiling by a quarter in a measurement).
    return request.app.state.services


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
    """Who is asking, for the per-client shares (api/admission.py): the access log's client too."""
    settings = s.settings
    return client_identity(request.scope, identity_header(settings.client_id_header),
                           settings.trusted_proxy_hops) or ""


async def run_job(s: Services, job: Job, request: Request) -> Outcome:
    """Answer ``job`` for the client of ``request`` (while it stays connected) and count it. ``job.version`` is
    set once the job is routed (api/models.py), for its answer to name the version that gave it."""
    note = note_of(request.scope)
    if note is not None and s.models.is_known(name := job.model or s.models.default):
        note.model = name  # a served name (never one a client made up): /metrics's label, whatever comes of it
    served = await s.models.route(job.model, job.version)
    job.version = served.version
    top_k = job.options.top_k
    if top_k is not None and top_k > 1 and (num_labels := served.catalog.view.num_labels) is not None and (
            why := top_k_refusal(job.options, num_labels)):
        raise ServiceError(ErrorKind.VALIDATION, why)  # the workers would refuse it too: no need to queue it
    # The id its texts are queued under is made here (new_request_id: never the client's, it names the reply key),
    # not in the gateway, so that the response and the access line show it even when the request then fails.
    request_id, client_id = new_request_id(), None
    if note is not None:
        note.request_id, note.texts, note.model, client_id = request_id, len(job.queries), served.name, note.client_id
    outcome = await while_connected(request, served.gateway.classify(job.queries, client_of(request, s),
                                                                     request_id=request_id,
                                                                     client_request_id=client_id))
    s.metrics.observe(outcome, len(job.queries), served.name, cache_on=s.settings.cache_ttl_s > 0)
    return outcome


def timing_headers(outcome: Outcome, started: float, cache_on: bool) -> dict[str, str]:
    """Where the time went, in milliseconds (text-embeddings-inference's header names), and the cache's verdict.
    (X-Request-ID is RequestMetrics's, on every response: api/access.py.)"""
    headers = {"X-Queue-Time": f"{outcome.queue_ms:.1f}",
               "X-Inference-Time": f"{outcome.inference_ms:.1f}",
               "X-Total-Time": f"{(time.perf_counter() - started) * 1000:.1f}"}
    if cache_on:  # hit: every text of the request was answered from the cache
        headers["X-Cache"] = "hit" if outcome.cached == len(outcome.predictions) else "miss"
    return headers


async def classify(job: Job, request: Request) -> JSONResponse:
    """How the API answers a body route's job (api/protocols/predict.py): through the queue, as its protocol
    renders the answer, with the timing headers."""
    s = services(request)
    started = time.perf_counter()
    outcome = await run_job(s, job, request)
    return JSONResponse(job.render(outcome.predictions),
                        headers=timing_headers(outcome, started, s.settings.cache_ttl_s > 0))


async def live_version(s: Services, name: str | None = None, version: int | None = None) -> ModelVersion:
    """Where a request for ``name`` (None: the default model) and ``version`` would go, its live workers read now
    (ready means the model is known too: /info, top_k's limit, the cache key); 404 for a name or version never
    served, 503 without a live worker, or until this process has read Redis's clock (deadlines are stamped on
    it)."""
    await s.models.find(name, version)  # a name never served: 404, without reading every version again
    await s.models.refresh()
    served = s.models.pick(name, version)
    await served.gateway.sync_clock()
    return served
