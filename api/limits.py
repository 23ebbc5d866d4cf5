"""Request body size limit, enforced while the body streams in (before any parsing), on the bytes received and,
for a gzip body, on its inflated size (api/encoding.py)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.encoding import GZIP_NAMES, IDENTITY, GzipBody, decoded_scope, unsupported_coding
from api.errors import ErrorKind, ServiceError, error_response


class BodySizeLimit:
    """Pure ASGI middleware: 413 when Content-Length or the streamed body exceeds ``max_bytes``, or a gzip POST
    body's inflated size does; 415 for a POST body in another Content-Encoding."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ServiceError:
        return ServiceError(ErrorKind.PAYLOAD_TOO_LARGE, f"request body exceeds {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        coding = None
        for name, value in scope.get("headers", []):
            if name == b"content-encoding":
                coding = value
            elif name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await error_response(self._too_large(), path=scope["path"])(scope, receive, send)
                    return
        if coding is not None and scope.get("method") == "POST":  # only POST routes read a body
            await self._decoding(coding.decode("latin-1").strip().lower(), scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    async def _decoding(self, coding: str, scope: Scope, receive: Receive, send: Send) -> None:
        if coding in GZIP_NAMES:
            await self.app(decoded_scope(scope), GzipBody(self._limited(receive), self.max_bytes), send)
        elif coding == IDENTITY:
            await self.app(scope, self._limited(receive), send)
        else:  # RFC 7694: a 415 for a content coding names the ones accepted
            refusal = error_response(unsupported_coding(coding), {"Accept-Encoding": "gzip"}, path=scope["path"])
            await refusal(scope, receive, send)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading; the app's handler shapes the 413.
                    raise HTTPException(413, self._too_large().message)
            return message

        return limited_receive
