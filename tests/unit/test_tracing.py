"""Tracing: off unless the OTEL_* environment turns it on; the worker's pass span and its links (with an in-memory
exporter); the batch loop telling its observer of every pass; the API's server span and its work items' context."""

import asyncio
import io
import re
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import fakeredis
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace import export as sdk_export
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from api.app import create_app
from api.settings import ApiSettings
from common.protocol import decode_item, encode_item
from common.tracing import TracingConfigError, check_or_exit, exporters_named, tracer_provider_from_env
from tests.unit.api_harness import announce, served_keys
from tests.unit.fakes import Clock, FakePredictor, FakeQueue, items
from worker.loop import BatchLoop, BatchPolicy
from worker.tracing import PassTracer, span_context_of

TRACE_ID, SPAN_ID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def recording() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


@pytest.mark.parametrize("environ", [{}, {"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_TRACES_EXPORTER": ""},
                                     {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}])
def test_tracing_is_off_unless_an_exporter_is_named(environ):
    assert exporters_named(environ) == []
    assert tracer_provider_from_env("x", environ) is None


def test_exporters_are_named_by_the_standard_variable():
    assert exporters_named({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    assert tracer_provider_from_env("svc", {"OTEL_TRACES_EXPORTER": "console"}).resource.attributes[
        "service.name"] == "svc"
    named = tracer_provider_from_env("svc", {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "mine"})
    assert named.resource.attributes["service.name"] == "mine"


GRPC_REFUSED = "this service speaks OTLP over http/protobuf (port 4318 of a collector), not gRPC"


@pytest.mark.parametrize("environ, fix", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "exports with otlp or console"),
    ({"OTEL_TRACES_EXPORTER": "zipkin,otlp, jaeger"}, "OTEL_TRACES_EXPORTER names jaeger, zipkin; this service"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, GRPC_REFUSED),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, GRPC_REFUSED),
])
def test_what_cannot_be_honoured_is_refused_with_the_fix(environ, fix):
    with pytest.raises(TracingConfigError, match=re.escape(fix)):
        exporters_named(environ)


@pytest.mark.parametrize("protocols", [
    {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, {"OTEL_EXPORTER_OTLP_PROTOCOL": ""},
    {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
    {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},  # traces' wins
])
def test_otlp_over_http_protobuf_is_accepted(protocols):
    assert exporters_named({"OTEL_TRACES_EXPORTER": "otlp", **protocols}) == ["otlp"]


def test_the_process_environment_is_read_when_none_is_given(monkeypatch, capsys):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    assert tracer_provider_from_env("svc") is None
    check_or_exit()  # nothing to refuse: the start goes on
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TracingConfigError, match="zipkin"):
        tracer_provider_from_env("svc")
    with pytest.raises(SystemExit) as info:
        check_or_exit()
    assert info.value.code == 2
    assert "invalid tracing setting: OTEL_TRACES_EXPORTER names zipkin" in capsys.readouterr().err


@pytest.fixture
def unset_global_provider(monkeypatch):
    """The process-wide tracer provider not yet set, as when a process starts (OpenTelemetry sets it once), and put
    back as it was after the test."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)


def test_console_tracing_writes_our_spans_and_the_libraries_spans(monkeypatch, unset_global_provider):
    out = io.StringIO()
    console = sdk_export.ConsoleSpanExporter
    monkeypatch.setattr(sdk_export, "ConsoleSpanExporter", lambda: console(out=out))  # stdout, here a buffer
    provider = tracer_provider_from_env("svc", {"OTEL_TRACES_EXPORTER": "console"})
    with provider.get_tracer("worker").start_as_current_span("forward pass"):
        pass
    with trace.get_tracer("some.library").start_as_current_span("library call"):  # a library's, via the global
        pass
    provider.force_flush()
    provider.shutdown()
    written = out.getvalue()
    assert '"name": "forward pass"' in written and '"name": "library call"' in written
    assert '"service.name": "svc"' in written


def test_otlp_tracing_posts_the_spans_to_the_configured_collector(monkeypatch, unset_global_provider):
    received = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.headers["Content-Type"],
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{server.server_port}/v1/traces")
        provider = tracer_provider_from_env("svc", {"OTEL_TRACES_EXPORTER": "otlp"})
        with provider.get_tracer("worker").start_as_current_span("forward pass"):
            pass
        provider.force_flush(5_000)
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    (path, content_type, body), = received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert b"forward pass" in body and b"svc" in body


@pytest.mark.parametrize("absent, exporter", [("opentelemetry.sdk", "otlp"), ("opentelemetry.sdk", "console"),
                                              ("opentelemetry.exporter.otlp", "otlp")])
def test_tracing_asked_for_without_the_tracing_extra_stops_the_start_naming_it(monkeypatch, capsys, absent, exporter):
    for name in [m for m in sys.modules if m == absent or m.startswith(absent + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, absent, None)  # as if not installed: importing it fails
    environ = {"OTEL_TRACES_EXPORTER": exporter}
    with pytest.raises(TracingConfigError, match=r"pip install 'sentimentalyzer\[tracing\]'"):
        tracer_provider_from_env("svc", environ)
    with pytest.raises(SystemExit) as info:
        check_or_exit(environ)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"invalid tracing setting: OTEL_TRACES_EXPORTER={exporter} turns tracing on, but the "
                          "tracing extra is not installed")
    assert "pip install 'sentimentalyzer[tracing]'" in err
    assert "unset OTEL_TRACES_EXPORTER (or set it to none) to run without tracing" in err
    assert exporters_named({}) == [] and tracer_provider_from_env("svc", {}) is None  # off: nothing is imported


def test_console_tracing_needs_no_otlp_exporter(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("opentelemetry.exporter.otlp")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp", None)
    assert exporters_named({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]


def test_a_traceparent_names_a_remote_span_and_a_bad_one_names_none():
    found = span_context_of(TRACEPARENT)
    assert (format(found.trace_id, "032x"), format(found.span_id, "016x")) == (TRACE_ID, SPAN_ID)
    assert found.is_remote
    assert span_context_of("00-not-a-trace") is None
    assert span_context_of(f"00-{'0' * 32}-{SPAN_ID}-01") is None  # an all-zero trace id is invalid


def traced_loop(raw, predictor=None):
    provider, exporter = recording()
    queue = FakeQueue(raw)
    loop = BatchLoop(queue, predictor or FakePredictor(), BatchPolicy(8, idle_block_s=0.5), clock=Clock(1000.5),
                     observer=PassTracer(provider.get_tracer("test"), "fake"))
    return loop, queue, exporter


def with_traceparents(raw: list[bytes], parents: list[str | None]) -> list[bytes]:
    return [encode_item(replace(decode_item(r), traceparent=p)) for r, p in zip(raw, parents)]


def test_each_pass_is_a_span_linked_to_the_requests_it_served_with_their_queue_wait():
    raw = with_traceparents(items(["good one", "bad two", "three"], now=1000.0), [TRACEPARENT, "garbage", None])
    loop, queue, exporter = traced_loop(raw)
    before = time.time_ns()
    assert loop.run(max_batches=1) == 1
    after = time.time_ns()
    (span,) = exporter.get_finished_spans()
    assert before <= span.start_time <= span.end_time <= after  # the pass, on the wall clock
    assert span.status.status_code == StatusCode.UNSET  # a pass that answered is no error
    assert span.name == "forward pass" and span.kind == SpanKind.CONSUMER and span.parent is None
    (link,) = span.links  # the bad traceparent and the untraced item: no link, but answered all the same
    assert (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x")) == (TRACE_ID, SPAN_ID)
    assert link.attributes["sentimentalyzer.index"] == 0
    assert link.attributes["sentimentalyzer.queue_wait_ms"] == pytest.approx(500.0)  # popped at 1000.5
    assert span.attributes["sentimentalyzer.pass.texts"] == 3 and span.attributes["sentimentalyzer.backend"] == "fake"
    assert span.attributes["sentimentalyzer.queue_wait_ms.max"] == pytest.approx(500.0)
    assert 0 <= span.attributes["sentimentalyzer.window.tokenize_ms"] < 1000  # the fake tokenizes at once
    assert len(queue.replies) == 3 and all(r.error is None for r in queue.replies)


def test_a_failed_pass_is_an_error_span():
    loop, queue, exporter = traced_loop(items(["explode"]), FakePredictor(fail_on="explode"))
    loop.run(max_batches=1)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert queue.replies[0].error is not None


def test_the_api_span_continues_the_clients_trace_and_its_items_carry_the_span():
    provider, exporter = recording()
    redis = fakeredis.FakeAsyncRedis()
    settings = ApiSettings(request_timeout_s=0.3)
    asyncio.run(announce(redis, settings))  # a live worker that takes nothing
    app = create_app(settings, client=redis, tracer_provider=provider)

    async def scenario() -> tuple[int, list[bytes]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                await client.get("/healthz")  # a probe: no span
                r = await client.post("/predict", json={"text": "hi"}, headers={"traceparent": TRACEPARENT})
        return r.status_code, await redis.lrange(served_keys(settings).requests, 0, -1)

    status, queued = asyncio.run(scenario())
    assert status == 504  # the worker takes nothing: the deadline passes
    (span,) = exporter.get_finished_spans()
    assert span.kind == SpanKind.SERVER and span.name == "POST /predict"
    assert format(span.context.trace_id, "032x") == TRACE_ID and format(span.parent.span_id, "016x") == SPAN_ID
    (item,) = [decode_item(raw) for raw in queued]
    assert item.traceparent == f"00-{TRACE_ID}-{format(span.context.span_id, '016x')}-01"
