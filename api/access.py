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

    __slots__ = ("client_id", "model", "request_id", "texts")

    def __init__(self, client_id: str | None) -> None:
        self.client_id = client_id  # the client's X-Request-ID, if well-formed
        self.request_id: str | None = None  # the id its work items were queued under (server-made), else a fresh one
        self.texts: int | None = None  # texts asked for, on prediction routes that got past validation
        self.model = ""  # the model it was routed to (a served name), on prediction routes that got that far

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


def identity_header(name: str | None) -> bytes | None:
    """CLIENT_ID_HEADER as ASGI names headers (lower-case bytes), for ``client_identity``."""
    return name.lower().encode("latin-1") if name else None


def client_identity(scope: Scope, header: bytes | None, hops: int) -> str | None:
    """Who is asking, for the per-client shares (api/admission.py) and the access log alike: the value the
    ``hops``-th trusted proxy from the API appended to ``header`` (CLIENT_ID_HEADER; TRUSTED_PROXY_HOPS), else the
    peer address; None where neither is known.

    Each proxy appends the address it got the request from, so only the ``hops`` rightmost values are the proxies';
    anything to their left is whatever the client sent (a fresh value per request would be a fresh share). A
    header with fewer values did not come through every trusted proxy (or the nearest one overwrote it): the peer
    address is used, as Werkzeug's ProxyFix does, never a value the client could have chosen. Several lines of
    the header count as one, joined in order (RFC 9110): a proxy may add its own line instead of appending."""
    if header is not None:
        lines = [value for name, value in scope["headers"] if name == header]
        if lines:
            # rsplit: only the last `hops` commas are looked at, however many values a client put in front.
            values = b",".join(lines).rsplit(b",", hops)
            if len(values) >= hops and (named := values[-hops].strip()):
                return named.decode("latin-1")
    peer = scope.get("client")
    return peer[0] if peer else None


def _printable(text: str) -> str:
    # Paths arrive percent-decoded: a client could put a newline in one and forge a second log line.
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """Writes a request's access line once it has ended: one formatted record, no await, nothing per request
    beyond the line itself (CLIENT_ID_HEADER's value is looked up only if that header is configured). Its client is
    ``client_identity``'s, the same as admission's.

    The record is handed to the logger as ``access_log.info(...)`` would, with the line's fields as attributes
    (``extra=``), but made from a template: LogRecord's constructor looks up, at every record, what is the same for
    every access line of a process (its file, thread and process names) and the caller's frame, which no line shows.
    Measured per line inside benchmarks.overhead: ~11 us of CPU instead of ~16 (JSON lines: ~15 instead of ~20)."""

    def __init__(self, client_header: str | None = None, proxy_hops: int = 1) -> None:
        self._client_header, self._proxy_hops = identity_header(client_header), proxy_hops
        template = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, "", (), None, "__call__")
        self._template = dict(vars(template))
        self._started, self._relative = template.created, template.relativeCreated

    def _client(self, scope: Scope) -> str:
        client = client_identity(scope, self._client_header, self._proxy_hops)
        return "-" if client is None else _printable(client)

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
