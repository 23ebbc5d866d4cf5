"""One error type for the HTTP layer and one mapping from its kind to an HTTP status.

Every error body has the same shape, ``{"error": {"type": ..., "message": ...}}``, except under the Open
Inference Protocol's routes (``/v2/...``), whose clients (tritonclient, the KServe SDK) read the protocol's
``{"error": "<message>"}``; the status is the same either way. Messages say what is wrong and what to do, never
how the server is built (no stack traces, no Redis addresses).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ErrorKind(str, enum.Enum):
    VALIDATION = "validation"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # a body not sent as JSON, or in a Content-Encoding not read
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    WORKER_ERROR = "worker_error"
    INTERNAL = "internal"
    CLIENT_CLOSED = "client_closed"  # never seen by a client: it hung up (the status nginx logs for that)


STATUS = {
    ErrorKind.VALIDATION: 422,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.OVERLOADED: 429,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.WORKER_ERROR: 500,
    ErrorKind.INTERNAL: 500,
    ErrorKind.CLIENT_CLOSED: 499,
}


class ServiceError(Exception):
    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: int | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details

    @property
    def status(self) -> int:
        return STATUS[self.kind]


class ErrorBody(BaseModel):
    type: ErrorKind
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class OipErrorResponse(BaseModel):
    """The Open Inference Protocol's error body."""

    error: str


# Where the Open Inference Protocol's routes live (api/protocols/oip.py): their errors take its body.
OIP_PREFIX = "/v2"
# The most characters of a client's own input (a header, a key, a model name) an error message quotes back: enough
# to recognise it, and a 5,000-character header is not answered with itself.
SHOWN_CHARS = 100


def cut(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error message names it: its first ``limit`` characters, an ellipsis if there were more."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error message quotes it (its repr), cut to ``limit`` characters with an ellipsis."""
    text = value if isinstance(value, str) else str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def error_response(error: ServiceError, headers: Mapping[str, str] | None = None, *,
                   path: str = "") -> JSONResponse:
    """The response for ``error`` on a request for ``path`` (which decides the body's shape)."""
    if path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/"):
        content = {"error": error.message}
    else:
        body = ErrorResponse(error=ErrorBody(type=error.kind, message=error.message, details=error.details))
        content = body.model_dump(mode="json", exclude_none=True)
    all_headers = dict(headers or {})
    if error.retry_after_s is not None:
        all_headers["Retry-After"] = str(error.retry_after_s)
    return JSONResponse(content, status_code=error.status, headers=all_headers or None)


def _where(loc: tuple[Any, ...], shape_keys: Collection[str]) -> list[str]:
    """An error's location in the body, as the client wrote it. A /predict body is one of several shapes (a union
    tagged by the key it has, api/protocols/predict.py): pydantic puts that tag before the field (body.text.top_k),
    which the client never wrote."""
    parts = list(loc[1:] if loc[:1] == ("body",) else loc)
    if len(parts) >= 2 and parts[0] in shape_keys and isinstance(parts[1], str):
        parts = parts[1:]
    return [cut(part) for part in parts]  # a key is the client's: a 5,000-character one is named by its start


def describe_errors(errors: list[Any], shape_keys: Collection[str] = ()) -> tuple[str, dict[str, Any]]:
    """The message and the detail of pydantic's ``errors``: the first one's, with how many more there are. Only
    the first is described: a list of 100,000 bad items is one problem told once, not 100,000 of them."""
    first = errors[0] if errors else {}
    # pydantic's messages never quote the input (it comes apart, in "input", which is not passed on).
    detail = {"loc": _where(tuple(first.get("loc", ())), shape_keys), "msg": first.get("msg", "invalid request"),
              "type": first.get("type", "invalid")}
    if detail["type"] == "json_invalid":
        message = "request body is not valid JSON"
    else:
        message = f"{'.'.join(detail['loc']) or 'body'}: {detail['msg']}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return message, detail


def _describe_validation(exc: RequestValidationError, shape_keys: Collection[str]) -> ServiceError:
    message, detail = describe_errors(list(exc.errors()), shape_keys)
    return ServiceError(ErrorKind.VALIDATION, message, details=[detail])


# 400 is FastAPI's answer to a body its JSON parser gave up on (nested ~1,000 deep, an integer of more than 4,300
# digits): to a client that is invalid JSON like any other, so the same documented 422.
_PARSE_FAILED = "request body could not be parsed as JSON (nested too deeply, or a number too long)"
_HTTP_KINDS = {400: ErrorKind.VALIDATION, 401: ErrorKind.UNAUTHORIZED, 404: ErrorKind.NOT_FOUND,
               405: ErrorKind.METHOD_NOT_ALLOWED,
               413: ErrorKind.PAYLOAD_TOO_LARGE, 415: ErrorKind.UNSUPPORTED_MEDIA_TYPE, 422: ErrorKind.VALIDATION}
SEND_JSON = "send Content-Type: application/json"


def _not_json(request: Request) -> ServiceError:
    """A JSON route's body sent with another Content-Type, or none: FastAPI leaves it unparsed and the body models
    refuse raw bytes with an error about the body's shape that hides the real fix. This names it, with the 415
    text-embeddings-inference's server answers.

    No Content-Type at all is refused too (FastAPI's strict_content_type, left on), not read as JSON: it was never
    accepted (the same misleading 422 before), TEI refuses it alike, and a browser can send a body without a type
    cross-origin with no CORS preflight (a Blob), which that default exists to stop."""
    given = request.headers.get("content-type")
    sent = f"sent as {shown(given)}" if given else "sent without a Content-Type"
    return ServiceError(ErrorKind.UNSUPPORTED_MEDIA_TYPE, f"the request body must be JSON but was {sent}: {SEND_JSON}")


def install_error_handlers(app: FastAPI, *, shape_keys: Collection[str]) -> None:
    """``shape_keys``: the tags of POST /predict's union of bodies (api/protocols/predict.py), left out of the
    locations errors report. Passed in, not imported: the protocols stand on this module."""

    async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc, path=request.url.path)

    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if isinstance(exc.body, bytes):  # a body FastAPI read but did not parse as JSON: its type is not JSON
            return error_response(_not_json(request), path=request.url.path)
        return error_response(_describe_validation(exc, shape_keys), path=request.url.path)

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if isinstance(exc.__cause__, ServiceError):  # raised while FastAPI read the body (api/encoding.py)
            return error_response(exc.__cause__, path=path)
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a body that is not UTF-8
            return error_response(ServiceError(ErrorKind.VALIDATION, "request body is not valid UTF-8 JSON"),
                                  path=path)
        kind = _HTTP_KINDS.get(exc.status_code)
        if kind is None:
            kind = ErrorKind.VALIDATION if 400 <= exc.status_code < 500 else ErrorKind.INTERNAL
            response = error_response(ServiceError(kind, str(exc.detail)), exc.headers, path=path)
            response.status_code = exc.status_code
            return response
        message = _PARSE_FAILED if exc.status_code == 400 else str(exc.detail)
        # exc.headers carries what the status needs, e.g. Allow on a 405 (RFC 9110).
        return error_response(ServiceError(kind, message), exc.headers, path=path)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(ServiceError(ErrorKind.INTERNAL, "internal error"), path=request.url.path)

    app.add_exception_handler(ServiceError, on_service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*kinds: ErrorKind, oip: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error shape for the given kinds (``oip``: the Open Inference
    Protocol's)."""
    model = OipErrorResponse if oip else ErrorResponse
    return {STATUS[kind]: {"model": model, "description": kind.value.replace("_", " ")} for kind in kinds}
