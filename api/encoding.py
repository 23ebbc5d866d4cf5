"""Content codings, both ways: gzip request bodies inflated as the app reads them, under the body limit
(api/limits.py), and gzip responses for clients that accept them, big enough to be worth it.

Neither costs a request that does not use it: a body without Content-Encoding is never wrapped, and a response is
only handed to Starlette's compressor when the client accepts gzip and the response does not declare itself small.
"""

from __future__ import annotations

import asyncio
import zlib

from starlette.middleware.gzip import GZipResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ErrorKind, ServiceError

# gzip's framing (RFC 1952) around deflate: zlib's window bits for it.
GZIP_WBITS = 16 + zlib.MAX_WBITS
# The most one step inflates before handing the chunk on: a step is ~0.1 ms of CPU, so a big body (or a bomb, which
# is refused once past the limit anyway) never holds the event loop for long.
INFLATE_CHUNK = 64 * 1024
# Content-Encoding values read as gzip (x-gzip: RFC 9110 8.4.1.3), and the one that means no coding.
GZIP_NAMES = frozenset({"gzip", "x-gzip"})
IDENTITY = "identity"
# Responses smaller than this go out as they are: compressing a few hundred bytes saves less than its headers' and
# CPU's cost (prediction answers are ~50-500 bytes; /openapi.json is ~35 KB).
GZIP_MIN_RESPONSE_BYTES = 1024
# zlib's default level: within a few % of level 9's size on JSON, at a fraction of its CPU.
GZIP_LEVEL = 6


def unsupported_coding(value: str) -> ServiceError:
    return ServiceError(ErrorKind.UNSUPPORTED_MEDIA_TYPE, f"Content-Encoding {value!r} is not supported: send the "
                        "body gzip-compressed (Content-Encoding: gzip) or uncompressed")


def decoded_scope(scope: Scope) -> Scope:
    """The request as the app sees it once its body is inflated: no Content-Encoding, and no Content-Length (it
    counted the compressed bytes)."""
    headers = [(name, value) for name, value in scope["headers"]
               if name not in (b"content-encoding", b"content-length")]
    return {**scope, "headers": headers}


class GzipBody:
    """An ASGI ``receive`` that inflates a gzip body as the app reads it, one bounded step per call. Refuses with
    413 as soon as the inflated size passes ``max_bytes`` (having inflated one byte past it at most: a bomb is never
    inflated), and with 422 a body that is not gzip or ends early. Several gzip members, one after the other, are
    one body (RFC 1952 2.2)."""

    def __init__(self, receive: Receive, max_bytes: int) -> None:
        self.receive = receive
        self.max_bytes = max_bytes
        self.inflater = zlib.decompressobj(GZIP_WBITS)
        self.pending = b""  # compressed bytes received and not yet inflated
        self.more_body = True  # the client has more to send
        self.full = False  # the last step stopped at its output bound: the inflater may hold more output
        self.inflated = 0
        self.finished = False

    async def __call__(self) -> Message:
        if self.finished:
            return await self.receive()  # after the body: the disconnect the app may wait for
        if self.pending or self.full:
            await asyncio.sleep(0)  # a further step from the same received bytes: let other requests run first
        else:
            message = await self.receive()
            if message["type"] != "http.request":
                return message
            self.pending = message.get("body", b"")
            self.more_body = message.get("more_body", False)
        chunk = self._step()
        last = not (self.more_body or self.pending or self.full)
        if last:
            if not self.inflater.eof:
                raise self._corrupt("ends before the end of its gzip stream")
            self.finished = True
        return {"type": "http.request", "body": chunk, "more_body": not last}

    def _step(self) -> bytes:
        bound = min(INFLATE_CHUNK, self.max_bytes - self.inflated + 1)  # one byte past the limit proves it passed
        try:
            chunk = self.inflater.decompress(self.pending, bound)
        except zlib.error as exc:
            # zlib's words for what is wrong, without its "Error -3 while decompressing data: " prefix
            raise self._corrupt(f"is not valid gzip ({str(exc).rpartition(': ')[2]})") from None
        self.pending = self.inflater.unconsumed_tail
        self.full = len(chunk) == bound
        if self.inflater.eof and self.inflater.unused_data:  # another member follows
            self.pending = self.inflater.unused_data + self.pending
            self.inflater = zlib.decompressobj(GZIP_WBITS)
        self.inflated += len(chunk)
        if self.inflated > self.max_bytes:
            raise ServiceError(ErrorKind.PAYLOAD_TOO_LARGE,
                               f"request body exceeds {self.max_bytes} bytes once decompressed")
        return chunk

    @staticmethod
    def _corrupt(why: str) -> ServiceError:
        # 422 as every other body that cannot be read (invalid JSON, not UTF-8): one documented status for them.
        return ServiceError(ErrorKind.VALIDATION, f"request body (Content-Encoding: gzip) {why}")


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            return b"gzip" in value.lower()
    return False


def _declared_small(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name == b"content-length":
            return value.isdigit() and int(value) < GZIP_MIN_RESPONSE_BYTES
    return False


class GzipResponses:
    """Pure ASGI middleware: Starlette's gzip responder, for clients that accept gzip and responses of at least
    GZIP_MIN_RESPONSE_BYTES. In front of it, so that a small answer pays next to nothing: the client's
    Accept-Encoding read from the raw headers, and a response that declares a small Content-Length (every JSON answer
    does) sent straight on. Starlette's GZipMiddleware parses the headers and holds back every response, accepted or
    not: measured around a stub sending a /predict-sized answer, it added 4.7 us per request either way, this 0.3 us
    (no Accept-Encoding) and 1.1 us (gzip accepted, as httpx, requests and browsers send) — on a /predict that costs
    the API ~110-150 us of CPU (benchmarks.overhead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        target: Send | None = None

        async def send_small_or_compressed(message: Message) -> None:
            nonlocal target
            if target is None:  # the response's start: decides for all its messages
                if _declared_small(message):
                    target = send
                else:
                    responder = GZipResponder(self.app, GZIP_MIN_RESPONSE_BYTES, compresslevel=GZIP_LEVEL)
                    responder.send = send
                    target = responder.send_with_compression
            await target(message)

        await self.app(scope, receive, send_small_or_compressed)
