"""The API's side of tracing (on only when common/tracing.py says so). FastAPI's own telemetry makes the server
span of each request, a child of the client's W3C ``traceparent`` when it sends one; this module configures it
and hands that span's context to the work items, which carry it through Redis to the worker's pass span
(worker/tracing.py)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes come every few seconds from machines, not clients: no spans for them.
UNTRACED = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


def telemetry(provider: TracerProvider) -> TelemetryConfig:
    """FastAPI's telemetry: one SERVER span per request (no spans for its dependencies and endpoint: the request's
    own is what a trace across the queue needs), no OpenTelemetry metrics (Prometheus has them) nor logs."""
    def untraced(scope: MutableMapping[str, Any]) -> bool:
        return scope.get("path") in UNTRACED

    return {"tracer_provider": provider, "tracing": True, "operation_spans": False, "metrics": False,
            "logs": False, "exclude": untraced}


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span in progress (the request's server span), for its work items."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")
