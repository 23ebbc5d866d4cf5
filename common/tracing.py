"""OpenTelemetry tracing, off by default, configured by the standard ``OTEL_*`` environment variables.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``: OTLP over HTTP/protobuf to
``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, default http://localhost:4318; ``console``: JSON on stdout; several,
comma-separated) and ``OTEL_SDK_DISABLED`` is not ``true``. Unset, or ``none``: no SDK is even imported, and the
request path does no tracing work at all. The SDK reads the rest itself: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*`` (batching of exports),
``OTEL_EXPORTER_OTLP_HEADERS`` and timeouts.

The SDK and the exporter are the package's ``tracing`` extra (``pip install 'sentimentalyzer[tracing]'``; a clone's
scripts/setup installs it): without it, an environment that turns tracing on is refused at start, naming the extra.

Spans leave through a batching processor (a background thread); what is still buffered is flushed when the process
exits normally (the SDK's exit hook), as both entry points do on SIGTERM.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

EXPORTERS = ("otlp", "console")
TRACING_EXTRA = "pip install 'sentimentalyzer[tracing]'"
# What each exporter needs imported: the SDK for any, the OTLP/HTTP exporter for otlp.
SDK_MODULE = "opentelemetry.sdk.trace"
OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


class TracingConfigError(ValueError):
    """The OTEL_* environment asks for something this service cannot do. The message names the fix."""


def exporters_named(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment turns tracing on with; empty: tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}; this service exports with "
                                 f"{' or '.join(EXPORTERS)} (or none: off)")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if "otlp" in names and protocol not in (None, "", "http/protobuf"):
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: this service speaks OTLP over "
                                 "http/protobuf (port 4318 of a collector), not gRPC")
    if names:
        require_packages(names, environ.get("OTEL_TRACES_EXPORTER", ""))
    return names


def require_packages(names: list[str], setting: str) -> None:
    """Raise, naming the extra to install, unless the SDK (and for otlp the exporter) can be imported."""
    for module in (SDK_MODULE, *([OTLP_MODULE] if "otlp" in names else [])):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={setting} turns tracing on, but the tracing extra is not installed "
                f"({module} cannot be imported: {exc}). Install it: {TRACING_EXTRA}; or unset "
                "OTEL_TRACES_EXPORTER (or set it to none) to run without tracing") from None


def tracer_provider_from_env(service_name: str, environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """A tracer provider exporting as the environment says, or None when tracing is off. ``service_name`` is the
    default of OTEL_SERVICE_NAME. Call once per process, in its entry point."""
    environ = os.environ if environ is None else environ
    names = exporters_named(environ)
    if not names:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)  # for libraries that trace too
    return provider


def check_or_exit(environ: Mapping[str, str] | None = None) -> None:
    """For entry points: OTEL_* settings this service cannot honour end the process (exit 2) with the fix."""
    try:
        exporters_named(os.environ if environ is None else environ)
    except TracingConfigError as exc:
        print(f"invalid tracing setting: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
