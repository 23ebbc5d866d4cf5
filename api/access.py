"""Request ids and the access log: what RequestMetrics (api/metrics.py) does per request besides counting it.

Every response carries an ``X-Request-ID``: the client's own, if it sent a well-formed one (so that it can find
its request in our logs under the id it already logs), else the id its work items were queued under, else (a
request that queued nothing: a 404, a 422, a probe) a fresh one. The same id is in the request's access log line
and, for the texts it queued, in the workers' log lines about the passes that ran them (the work items carry the
client's id: common/protocol.py). The id that names the reply key is always made by the server (new_request_id, in
api/handling.py's run_job): a client's id only labels logs, so a client can neither guess another request's reply key
nor collide with it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from starlette.types import Scope

from common.protocol import new_request_id

REQUEST_ID_HEADER = b"x-request-id"
# What a client's id may be: short and plain, so that it is safe in a log line (no spaces, quotes or control
# characters) and small in every work item of its request. Anything else is ignored (a fresh id is used), never
# refused: a tracing header a proxy mangled is no reason to fail a request.
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,64}")
# Where a request's note lives in its ASGI scope (the same dict from the middleware down to the route).
NOTE_KEY = "sentimentalyzer.request"

access_log = logging.getLogger("api.access")


class RequestNote:
    """What the request path learns of a request for its access line and its X-Request-ID."""

    __slots__ = ("client_id", "request_id", "texts")

    def __init__(self, client_id: str | None) -> None:
        self.client_id = client_id  # the client's X-Request-ID, if well-formed
        self.request_id: str | None = None  # the id its work items were queued under (server-made), else a fresh one
        self.texts: int | None = None  # texts asked for, on prediction routes that got past validation

    def public_id(self) -> str:
        """The request's id as its response, its access line and the workers' logs show it."""
        if self.client_id is not None:
            return self.client_id
        if self.request_id is None:
            self.request_id = new_request_id()
        return self.request_id


def client_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The client's X-Request-ID (ASGI headers: lower-case names), if it sent a well-formed one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return value.decode("ascii") if _CLIENT_ID.fullmatch(value) else None
    return None


def note_of(scope: Scope) -> RequestNote | None:
    """The request's note (None where no RequestMetrics runs: an app built without it)."""
    return scope.get(NOTE_KEY)


def _printable(text: str) -> str:
    # Paths arrive percent-decoded: a client could put a newline in one and forge a second log line.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """Writes a request's access line once it has ended: one formatted record, no await, nothing per request
    beyond the line itself (CLIENT_ID_HEADER's value is looked up only if that header is configured).

    The record is handed to the logger as ``access_log.info(...)`` would, with the line's fields as attributes
    (``extra=``), but made from a template: LogRecord's constructor looks up, at every record, what is the same for
    every access line of a process (its file, thread and process names) and the caller's frame, which no line shows.
    Measured per line inside benchmarks.overhead: ~11 us of CPU instead of ~16 (JSON lines: ~15 instead of ~20)."""

    def __init__(self, client_header: str | None = None) -> None:
        self._client_header = client_header.lower().encode("latin-1") if client_header else None
        template = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, "", (), None, "__call__")
        self._template = dict(vars(template))
        self._started, self._relative = template.created, template.relativeCreated

    def _client(self, scope: Scope) -> str:
        if self._client_header is not None:
            for name, value in scope["headers"]:
                if name == self._client_header and value:
                    return _printable(value.decode("latin-1").split(",", 1)[0].strip())
        peer = scope.get("client")
        return peer[0] if peer else "-"

    def __call__(self, scope: Scope, note: RequestNote, status: int, elapsed_s: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        method, path, ms = scope["method"], _printable(scope["path"]), round(elapsed_s * 1000, 1)
        request_id, client, texts = note.public_id(), self._client(scope), note.texts
        record = logging.LogRecord.__new__(logging.LogRecord)
        attributes = record.__dict__
        attributes.update(self._template)
        now = time.time()
        attributes.update(created=now, msecs=int((now - int(now)) * 1000) + 0.0,
                          relativeCreated=self._relative + (now - self._started) * 1000,
                          method=method, path=path, status=status, duration_ms=ms, request_id=request_id, client=client)
        if texts is None:
            record.msg, record.args = "%s %s %d %.1fms id=%s client=%s", (method, path, status, ms, request_id, client)
        else:
            record.msg, record.args = ("%s %s %d %.1fms id=%s texts=%d client=%s",
                                       (method, path, status, ms, request_id, texts, client))
            attributes["texts"] = texts
        access_log.handle(record)
