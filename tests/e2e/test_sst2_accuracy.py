"""SST-2 dev through HTTP with the trained MiniLM: the service's accuracy equals the in-process accuracy."""

import asyncio

import httpx
import pytest

from engine.hf_predictor import TransformersPredictor
from engine.predictor import predict_by_length
from engine.settings import ModelSettings
from tests.e2e.conftest import start_service
from tests.helpers import load_sst2_dev


@pytest.mark.needs_shared
def test_sst2_dev_accuracy_through_http_equals_in_process(shared_minilm, redis_server, tmp_path):
    rows = load_sst2_dev()
    sentences = [s for s, _ in rows]
    in_process = predict_by_length(TransformersPredictor(ModelSettings(model=str(shared_minilm), torch_threads=1)),
                                   sentences)
    # BACKEND=torch, the in-process reference's: the batched HTTP path is under test here, and every backend's
    # agreement on these sentences is tests/integration/test_benchmark_agreement.py's (so the worker does not measure
    # and export MiniLM a second time, ~25 s of CPU).
    svc = start_service(redis_server.url, shared_minilm, tmp_path, workers=1, BACKEND="torch",
                        MAX_BATCH_SIZE="32", REQUEST_TIMEOUT_S="60")
    try:
        async def classify_all() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=svc.url, timeout=120, limits=limits) as client:
                semaphore = asyncio.Semaphore(64)

                async def one(text: str) -> httpx.Response:
                    async with semaphore:
                        return await client.post("/predict", json={"text": text})

                return await asyncio.gather(*(one(s) for s in sentences))

        responses = asyncio.run(classify_all())
    finally:
        svc.stop()
    assert all(r.status_code == 200 for r in responses)
    served = [r.json() for r in responses]
    http_correct = sum((p["label"] == "POSITIVE") == bool(y) for p, (_, y) in zip(served, rows))
    local_correct = sum((p.label == "POSITIVE") == bool(y) for p, (_, y) in zip(in_process, rows))
    assert http_correct == local_correct
    assert round(http_correct / len(rows), 4) == 0.8899
    assert all(p["label"] == q.label and abs(p["score"] - q.score) < 1e-4 for p, q in zip(served, in_process))
