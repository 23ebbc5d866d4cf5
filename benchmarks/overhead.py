"""``python -m benchmarks.overhead``: the API process's own CPU per ``/predict``, Redis replaced by an instant stub.

At the no-op ceiling (benchmarks.scaleout) the API process is the bottleneck, so its Python cost per request sets
the service's top rate. This drives the real app (routing, validation, middleware, gateway, encoding and decoding)
in-process through ASGI with a stub client that answers every push at once: no network, no Redis, no worker.
Run it on two commits to see what a change costs per request:

    python -m benchmarks.overhead                                   # this checkout
    python -m benchmarks.overhead --tracing                         # with tracing on (spans made, then dropped)
    ACCESS_LOG=false python -m benchmarks.overhead                  # any setting, from the environment as served
    cd <other checkout> && PYTHONPATH=. python <this checkout>/benchmarks/overhead.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import api.app
from api.app import create_app
from api.settings import ApiSettings
from common.protocol import Prediction, Reply, decode_item, encode_reply

try:
    from common.keys import DEFAULT_MODEL_NAME
except ImportError:  # a commit from before several models per deployment
    DEFAULT_MODEL_NAME = "sentimentalyzer"

try:
    from common.scripts import REFUSAL_MARKER
except ImportError:  # a commit from before the push and its first wait went in one round trip
    REFUSAL_MARKER = None


# The one live worker the stub's worker-states script reports (worker id, incarnation, beating, held, leased): the
# model catalog, read in the background, finds the default model served, so that requests are routed to it.
LIVE_WORKER = [b"w1", b"i1", 1, 0, 0]


class _InstantScript:
    """A registered Lua script: the push script answers every item at once; the worker-states script finds one live
    worker; the others do nothing."""

    def __init__(self, stub: InstantRedis, source: str) -> None:
        self._stub = stub
        self._is_states = "HGETALL" in source
        self._is_push = "LLEN" in source and not self._is_states
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> int:
        if not self._is_push:
            return list(LIVE_WORKER) if self._is_states else []
        # The limits come first, as numbers; then the refusal marker, if this commit has one.
        for raw in (arg for arg in args if isinstance(arg, bytes) and arg != REFUSAL_MARKER):
            item = decode_item(raw)
            reply = Reply(item.request_id, item.index, predictions=[Prediction("POSITIVE", 0.9)], queue_ms=1.0,
                          inference_ms=2.0)
            self._stub.replies.setdefault(item.request_id, []).append(encode_reply(reply))
        return 1


class InstantRedis:
    """The few client methods the request path uses, answering from memory."""

    def __init__(self) -> None:
        self.replies: dict[str, list[bytes]] = {}
        self.scripts: dict[str, _InstantScript] = {}
        self.connection_pool = _InstantPool(self)

    def register_script(self, source: str) -> _InstantScript:
        script = _InstantScript(self, source)
        self.scripts[script.sha] = script
        return script

    async def smembers(self, key: str) -> set[bytes]:
        """The deployment's models: the default one, version 1."""
        return {f"{DEFAULT_MODEL_NAME}/1".encode()}

    def pipeline(self, transaction: bool = True) -> _InstantPipeline:
        return _InstantPipeline()

    async def blmpop(self, timeout: float, numkeys: int, key: str, direction: str, count: int) -> list[Any]:
        return [key, self.replies.pop(key.rsplit(":", 1)[1])]

    async def time(self) -> tuple[int, int]:
        """Redis's TIME (seconds, microseconds): the API syncs its deadline clock with it before serving."""
        now = time.time()
        return int(now), int(now % 1 * 1_000_000)

    async def aclose(self) -> None:
        return None


class _InstantPipeline:
    """The catalog's read of the live workers' heartbeats: the worker describes nothing."""

    def __init__(self) -> None:
        self._fields: list[Sequence[str]] = []

    def hmget(self, key: str, fields: Sequence[str]) -> None:
        self._fields.append(fields)

    async def execute(self) -> list[list[None]]:
        return [[None] * len(fields) for fields in self._fields]


class _InstantPool:
    """The pool of the request path's raw round trips (api/round_trip.py): one connection that runs each command
    sent as the client methods above would."""

    def __init__(self, stub: InstantRedis) -> None:
        self._connection = _InstantConnection(stub)

    async def get_connection(self) -> _InstantConnection:
        return self._connection

    async def release(self, connection: _InstantConnection) -> None:
        return None

    async def disconnect(self, inuse_connections: bool = True) -> None:
        return None


class _InstantConnection:
    def __init__(self, stub: InstantRedis) -> None:
        self._stub = stub
        self._sent: list[tuple[Any, ...]] = []

    def pack_commands(self, commands: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return list(commands)

    async def send_packed_command(self, commands: list[tuple[Any, ...]], check_health: bool = True) -> None:
        self._sent.extend(commands)

    async def read_response(self) -> Any:
        name, *args = self._sent.pop(0)
        if name == "EVALSHA":
            sha, numkeys, *keys_and_args = args
            return await self._stub.scripts[sha](keys_and_args[:numkeys], keys_and_args[numkeys:])
        timeout, numkeys, key, direction, _, count = args  # BLMPOP
        return await self._stub.blmpop(timeout, numkeys, key, direction=direction, count=count)


def dropping_tracer_provider() -> Any:
    """Tracing on as in production (a server span per request, batched for export) with an exporter that drops
    the batches: the request path's cost of tracing, without a collector's."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    return provider


@contextlib.contextmanager
def logging_as_served(settings: ApiSettings) -> Iterator[None]:
    """Logging set up as a served API process sets it up (LOG_LEVEL, LOG_FORMAT), its lines written to /dev/null:
    what logging costs the request path (the access log's line, ACCESS_LOG) is in the figure, its output is not on
    the screen. The previous set-up is restored after (the driver also runs inside the test suite)."""
    from common.logs import setup_logging

    root = logging.getLogger()
    handlers, level, hooks = root.handlers[:], root.level, (sys.excepthook, threading.excepthook)
    try:
        with open(os.devnull, "w") as devnull:
            try:
                setup_logging(settings.log_level, "api", settings.log_format, stream=devnull)
            except (TypeError, AttributeError):  # a commit from before LOG_FORMAT: its own set-up, redirected
                setup_logging(settings.log_level, "api")
                for handler in root.handlers:
                    handler.setStream(devnull)  # type: ignore[attr-defined]
            yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        root.handlers[:], root.level = handlers, level
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)


async def cpu_per_request_us(requests: int, repeats: int, tracing: bool = False) -> list[float]:
    settings = ApiSettings(key_prefix="overhead")
    with logging_as_served(settings):
        return await _measure(settings, requests, repeats, tracing)


async def _measure(settings: ApiSettings, requests: int, repeats: int, tracing: bool) -> list[float]:
    # Only with tracing is the argument passed: the same driver measures commits from before tracing existed.
    extra = {"tracer_provider": dropping_tracer_provider()} if tracing else {}
    app = create_app(settings, InstantRedis(), **extra)  # type: ignore[arg-type]
    thresholds = gc.get_threshold()
    try:
        # As a served process does: api.app.freeze_startup_heap, or on a commit from before it, what it first did.
        freeze = getattr(api.app, "freeze_startup_heap", None)
        if freeze is not None:
            freeze()
        else:
            gc.collect()
            gc.freeze()
        return await _drive(app, requests, repeats)
    finally:
        gc.set_threshold(*thresholds)  # this process's own, as they were (a test may be running us)


async def _drive(app: Any, requests: int, repeats: int) -> list[float]:
    body = json.dumps({"text": "a charming and often affecting journey"}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}

    async def one() -> None:
        sent: list[dict[str, Any]] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        complete = asyncio.Event()

        async def receive() -> dict[str, Any]:
            # As uvicorn does: after the body, the next message waits for the response (or the client) to end.
            if pending:
                return pending.pop()
            await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete.set()

        await app({**scope, "state": {}}, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"/predict answered {sent[0]['status']}: {sent[1:]}")

    async with app.router.lifespan_context(app):
        for _ in range(min(500, requests)):  # warm-up
            await one()
        runs = []
        for _ in range(repeats):
            started = time.process_time()
            for _ in range(requests):
                await one()
            runs.append((time.process_time() - started) / requests * 1e6)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per measured run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracing", action="store_true", help="tracing on (OTEL_TRACES_EXPORTER set, in effect)")
    args = parser.parse_args(argv)
    runs = asyncio.run(cpu_per_request_us(args.requests, args.repeats, args.tracing))
    print(f"API CPU per /predict{' (tracing on)' if args.tracing else ''}: {statistics.median(runs):.1f} us (median of {args.repeats} runs of "
          f"{args.requests}: {', '.join(f'{r:.1f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
