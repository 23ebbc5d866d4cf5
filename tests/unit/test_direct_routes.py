"""The body routes' direct path (api/protocols/direct.py): what it answers itself, what it leaves to FastAPI with the
body as read, and that the service answers every body alike either way."""

import gzip
import json

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from api.protocols.direct import DirectBodyRoutes, is_json
from tests.unit.api_harness import run, running, settings


class Inner:
    """The app behind the middleware (FastAPI's layers in the service): records what reached it, echoes the body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await PlainTextResponse(f"inner:{body.decode('latin-1')}")(scope, receive, send)


class Refused(HTTPException):
    pass


async def answer(request: Request, body: bytes) -> JSONResponse | None:
    value = json.loads(body) if body else None
    if value == "leave":
        return None
    if value == "refuse":
        raise Refused(418, "no")
    if value == "break":
        raise RuntimeError("a bug")
    return JSONResponse({"direct": value, "path": request.url.path})


def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"handled": exc.detail}, status_code=exc.status_code)


async def post(middleware, path="/predict", content=b'"hi"', content_type="application/json", method="POST",
               scope_extra=None):
    async def app(scope, receive, send):
        await middleware({**scope, **(scope_extra or {})}, receive, send)

    headers = {"content-type": content_type} if content_type else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        return await http.request(method, path, content=content, headers=headers)


def middleware(handlers=None):
    inner = Inner()
    return DirectBodyRoutes(inner, {"/predict": answer}, handlers if handlers is not None else {}), inner


def test_a_json_post_on_a_body_route_is_answered_directly():
    direct, inner = middleware()
    response = run(post(direct))
    assert response.json() == {"direct": "hi", "path": "/predict"} and inner.bodies == []
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        assert run(post(direct, content_type=content_type)).json()["direct"] == "hi"


@pytest.mark.parametrize("request_args", [
    {"path": "/predict/"}, {"path": "/other"}, {"method": "PUT"}, {"content_type": "text/plain"},
    {"content_type": None}, {"scope_extra": {"fastapi.telemetry": object()}},
], ids=["trailing-slash", "other-path", "put", "text", "no-type", "telemetry"])
def test_other_requests_go_on_untouched(request_args):
    direct, inner = middleware()
    response = run(post(direct, **request_args))
    assert response.text == 'inner:"hi"' and inner.bodies == [b'"hi"']


def test_what_the_answer_leaves_goes_on_with_the_body_as_read():
    direct, inner = middleware()
    assert run(post(direct, content=b'"leave"')).text == 'inner:"leave"'
    assert inner.bodies == [b'"leave"']


def test_errors_go_to_the_apps_handler_for_their_class_or_up():
    direct, _ = middleware({HTTPException: on_http_error})
    response = run(post(direct, content=b'"refuse"'))  # a subclass: found by its MRO, as Starlette looks it up
    assert (response.status_code, response.json()) == (418, {"handled": "no"})
    with pytest.raises(RuntimeError, match="a bug"):  # none but the catch-all: to the server-error layer
        run(post(middleware({Exception: on_http_error})[0], content=b'"break"'))


def test_an_async_handler_is_awaited():
    async def handler(request, exc):
        return JSONResponse({"async": exc.status_code}, status_code=409)

    response = run(post(middleware({HTTPException: handler})[0], content=b'"refuse"'))
    assert (response.status_code, response.json()) == (409, {"async": 418})


@pytest.mark.parametrize("content_type, expected", [
    ("application/json", True), ("Application/JSON ; charset=utf-8", True), ("application/problem+json", True),
    ("text/json", False), ("application/jsonx", False), ("application", False), ("", False), (None, False),
    ("application/json/x", False),
])
def test_json_content_types(content_type, expected):
    assert is_json(content_type) is expected


def _without_direct_path(app) -> None:
    app.user_middleware = [m for m in app.user_middleware if m.cls is not DirectBodyRoutes]


BODIES = [
    ("/predict", {"text": "good"}, {}),
    ("/predict", {"inputs": ["good", "bad"]}, {}),
    ("/predict/batch", {"texts": ["good", "bad"]}, {}),
    ("/predict", {"text": ""}, {}),
    ("/predict", {"text": "x", "nope": 1}, {}),
    ("/predict", {"text": "a", "inputs": "b"}, {}),
    ("/predict", [[[[1]]]] * 50, {}),
    ("/predict", None, {"content": b'{"text": '}),
    ("/predict", None, {"content": b"\xff\xfe"}),
    ("/predict", None, {"content": b""}),
    ("/predict", None, {"content": b"[" * 5000 + b"]" * 5000}),
    ("/predict", {"text": "good"}, {"headers": {"content-type": "text/plain"}}),
    ("/predict", None, {"content": gzip.compress(b'{"text": "good"}'),
                        "headers": {"content-type": "application/json", "content-encoding": "gzip"}}),
    ("/predict", None, {"content": b'{"text": "' + b"a" * 5000 + b'"}'}),
]


@pytest.mark.parametrize("path, body, extra", BODIES)
def test_the_service_answers_alike_with_and_without_the_direct_path(path, body, extra):
    async def answers(direct: bool):
        extend = None if direct else _without_direct_path
        async with running(settings(), extend=extend) as (http, _):
            kwargs = {"json": body} if body is not None else {}
            kwargs.update(extra)
            response = await http.post(path, **kwargs)
            return response.status_code, response.json(), response.headers.get("retry-after")

    assert run(answers(True)) == run(answers(False))
