"""An OTLP/HTTP trace receiver for tests: what the services' exporters send to ``<url>/v1/traces``, decoded with
OpenTelemetry's own protobuf definitions into plain spans."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict
    links: list[Link] = field(default_factory=list)


def _value(value: AnyValue) -> object:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def _attributes(pairs) -> dict:
    return {kv.key: _value(kv.value) for kv in pairs}


class OtlpReceiver:
    """Listens on a free loopback port until ``stop``; ``spans`` is everything received so far."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    receiver.spans.extend(_spans(request))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="otlp receiver", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _spans(request: ExportTraceServiceRequest) -> list[Span]:
    found = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                found.append(Span(service, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind,
                                  _attributes(s.attributes),
                                  [Link(li.trace_id.hex(), li.span_id.hex(), _attributes(li.attributes))
                                   for li in s.links]))
    return found
