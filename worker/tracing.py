"""The worker's side of tracing (on only when common/tracing.py says so): one span per forward pass, linked to the
request span of every text it answered (one pass serves many traces, so links, not a parent), with the pass's
timings as attributes and each text's queue wait on its link."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker.window import Held

PROPAGATOR = TraceContextTextMapPropagator()


def span_context_of(traceparent: str) -> trace.SpanContext | None:
    """The remote span a W3C ``traceparent`` names, or None if it is not a valid one (a bad one costs its link,
    never its text)."""
    found = PROPAGATOR.extract({"traceparent": traceparent}, context.Context())
    span_context = trace.get_current_span(found).get_span_context()
    return span_context if span_context.is_valid else None


class PassTracer:
    def __init__(self, tracer: Tracer, backend: str) -> None:
        self._tracer = tracer
        self._backend = backend

    def record(self, held: Sequence[Held], *, started_ns: int, ended_ns: int, picked_up: float, tokenize_s: float,
               failed: bool) -> None:
        """A finished pass over ``held``: from ``started_ns`` to ``ended_ns`` (Unix ns); ``picked_up``: when its
        window was popped (Unix s, the queue's clock); ``tokenize_s``: the window's one tokenization."""
        links, waits = [], []
        for h in held:
            wait_ms = max(0.0, (picked_up - h.item.enqueued_at) * 1000)
            waits.append(wait_ms)
            linked = span_context_of(h.item.traceparent) if h.item.traceparent else None
            if linked is not None:
                links.append(Link(linked, {"sentimentalyzer.request_id": h.item.request_id,
                                           "sentimentalyzer.index": h.item.index,
                                           "sentimentalyzer.queue_wait_ms": wait_ms}))
        tokens = [h.tokens for h in held]
        span = self._tracer.start_span("forward pass", kind=SpanKind.CONSUMER, start_time=started_ns, links=links,
                                       attributes={
                                           "sentimentalyzer.backend": self._backend,
                                           "sentimentalyzer.pass.texts": len(held),
                                           "sentimentalyzer.pass.tokens": sum(tokens),
                                           "sentimentalyzer.pass.padded_tokens": max(tokens, default=0) * len(held),
                                           "sentimentalyzer.pass.infer_ms": (ended_ns - started_ns) / 1e6,
                                           "sentimentalyzer.window.tokenize_ms": tokenize_s * 1000,
                                           "sentimentalyzer.queue_wait_ms.max": max(waits, default=0.0),
                                           "sentimentalyzer.queue_wait_ms.mean": sum(waits) / len(waits) if waits
                                           else 0.0,
                                       })
        if failed:
            span.set_status(Status(StatusCode.ERROR, "inference failed"))
        span.end(end_time=ended_ns)
