"""OpenTelemetry tracing across processes: the API and a worker (the tiny real model) export over OTLP/HTTP to a
receiver in the test. With tracing on (OTEL_TRACES_EXPORTER=otlp and the receiver's endpoint: what a user sets),
every request is one trace continuing the client's ``traceparent``, and the worker's forward-pass spans link to
each request span they served, with the pass's timings."""

import asyncio
import secrets

import httpx

from tests.e2e.conftest import start_service
from tests.helpers import sentences
from tests.otlp import OtlpReceiver

SERVER, CONSUMER = 2, 5  # OTLP's SpanKind numbers


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def send(url: str, calls: list[tuple[dict, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(*(client.post("/predict/batch" if "texts" in body else "/predict", json=body,
                                                  headers=headers) for body, headers in calls))


def test_each_request_is_one_trace_and_the_worker_pass_links_to_it(redis_server, tiny_model, tmp_path):
    receiver = OtlpReceiver()
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=1, OTEL_TRACES_EXPORTER="otlp",
                        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{receiver.url}/v1/traces")
    try:
        texts = sentences(12, seed=21)
        parents = [traceparent() for _ in range(9)]
        calls = [({"text": t}, {"traceparent": p[0]}) for t, p in zip(texts, parents[:8])]
        calls.append(({"texts": texts[8:11]}, {"traceparent": parents[8][0]}))  # one request, three texts
        calls.append(({"text": texts[11]}, {}))  # no traceparent: a trace of its own
        responses = asyncio.run(send(svc.url, calls))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    finally:
        # A clean stop flushes what each process's exporter still buffers.
        assert svc.api.stop() == 0
        assert [w.stop() for w in svc.workers] == [0]
        receiver.stop()
    spans = receiver.spans
    api = [s for s in spans if s.service == "sentimentalyzer-api"]
    passes = [s for s in spans if s.service == "sentimentalyzer-worker"]
    print(f"\n{len(api)} API spans, {len(passes)} pass spans; a pass: {passes[0].attributes}")

    assert all(s.kind == SERVER and s.name.startswith("POST /predict") for s in api)  # probes and scrapes: no spans
    assert len(api) == len(calls)
    links: dict[tuple[str, str], list] = {}  # (trace, span) a link names -> the links naming it
    for p in passes:
        for link in p.links:
            links.setdefault((link.trace_id, link.span_id), []).append(link)
    for (header, trace_id, span_id), (body, _) in zip(parents, calls):
        (request_span,) = [s for s in api if s.trace_id == trace_id]  # one server span per trace ...
        assert request_span.parent_span_id == span_id  # ... continuing the client's
        assert request_span.attributes["http.response.status_code"] == 200
        linked = links.get((trace_id, request_span.span_id), [])
        assert sorted(link.attributes["sentimentalyzer.index"] for link in linked) == list(
            range(len(body.get("texts", [None]))))  # every text of the request, each on its pass
        for link in linked:
            assert link.attributes["sentimentalyzer.queue_wait_ms"] >= 0
    untraced = [s for s in api if s.trace_id not in {p[1] for p in parents}]
    assert len(untraced) == 1 and untraced[0].parent_span_id == ""  # a root of its own
    assert (untraced[0].trace_id, untraced[0].span_id) in links  # and linked too
    for p in passes:
        assert p.kind == CONSUMER and p.name == "forward pass" and p.parent_span_id == ""
        assert p.attributes["sentimentalyzer.pass.texts"] == len(p.links)
        assert p.attributes["sentimentalyzer.pass.infer_ms"] > 0
        assert p.attributes["sentimentalyzer.window.tokenize_ms"] > 0
        assert p.attributes["sentimentalyzer.pass.padded_tokens"] >= p.attributes["sentimentalyzer.pass.tokens"] > 0
    assert sum(p.attributes["sentimentalyzer.pass.texts"] for p in passes) == 12
