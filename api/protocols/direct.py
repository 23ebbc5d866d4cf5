"""The direct path of the body routes (POST /predict and the protocols' others): their JSON requests answered by an
ASGI middleware, inside the app's own middlewares (metrics and access log, CORS, API key, gzip, body limits: they
all still apply) but before FastAPI's exception, routing and request-handling layers.

Why: on a loaded API those layers were the larger part of the process's CPU per request. Measured served on uvicorn
(benchmarks.api_cpu's load, AMD EPYC, 2 cores): a bare FastAPI route cost ~200 us of CPU per request, a bare ASGI
callable ~60 us. The answer is the route's own (``json_answer`` in api/protocols/predict.py: the same parsing,
validation and endpoint), its errors go to the app's exception handlers as FastAPI's layers would send them, and
whatever that path does not answer — another Content-Type, an empty body, one its parser gives up on — goes on to
FastAPI with the body as read, where the route answers as before. So does every request while FastAPI's telemetry is
on (API tracing): its router names each request's span after the route it matched."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A body route's answer to a request with a JSON body (its bytes): None where FastAPI's own handling answers.
JsonAnswer = Callable[[Request, bytes], Awaitable["Response | None"]]
ExceptionHandler = Callable[[Request, Any], Any]


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this Content-Type as JSON (application/json or application/*+json)."""
    if content_type == "application/json":  # what nearly every client sends
        return True
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    if kind.count("/") != 1:  # as email.message, which FastAPI asks: not a type/subtype, so text/plain
        return False
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _content_type(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1")
    return None


def _replayed(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read from it given back first, for FastAPI to read again."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class DirectBodyRoutes:
    """Pure ASGI middleware answering POST requests with a JSON body on the paths of ``answers`` (exactly: other
    spellings, methods and types go on to FastAPI, which redirects, refuses or answers them as before).
    ``exception_handlers``: the app's (a live mapping: handlers added later count); an exception none of them
    takes but the catch-all ``Exception`` one is raised on, to the server-error layer outside, as from a route."""

    def __init__(self, app: ASGIApp, answers: Mapping[str, JsonAnswer],
                 exception_handlers: Mapping[Any, ExceptionHandler]) -> None:
        self.app = app
        self.answers = answers
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.answers.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if answer is None or scope.get("fastapi.telemetry") is not None or not is_json(_content_type(scope)):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        body = b""
        try:
            body = await request.body()
            response = await answer(request, body)
        except Exception as exc:  # noqa: BLE001 (only what the app has a handler for is answered here)
            handler = self._handler_for(exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        if response is None:
            await self.app(scope, _replayed(body, receive), send)
            return
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> ExceptionHandler | None:
        """The app's handler for ``exc``, by its class's MRO, as Starlette looks it up; not the catch-all one, which
        answers 500s outside every middleware."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None
