"""The same model behind LitServe with its own dynamic batching: the peer in ``python -m benchmarks --peer``.

``python -m benchmarks.peers.litserve_server`` (settings from the environment like the naive server: MODEL,
BACKEND, TORCH_THREADS, PORT; plus LITSERVE_MAX_BATCH_SIZE and LITSERVE_BATCH_TIMEOUT_S). Same request and
response JSON as our ``/predict``; the model code is ours (``TransformersPredictor``: the same tokenizer call,
padding and forward pass), so the servers differ only in how requests reach the model: LitServe collects up to
``max_batch_size`` requests or waits ``batch_timeout`` seconds, in arrival order, in one inference process fed
by its API process. Its only batching knobs are those two (it counts requests, not tokens), tuned for it in
the benchmark (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import sys

import litserve as ls
from fastapi import HTTPException

from common.logs import setup_logging
from engine.autotune.probe import ProbePolicy
from engine.hf_predictor import TransformersPredictor
from naive.settings import NaiveSettings


class SentimentAPI(ls.LitAPI):
    def __init__(self, settings: NaiveSettings, max_batch_size: int, batch_timeout_s: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.settings = settings

    def setup(self, device: str) -> None:
        # BACKEND=auto measures candidates the way LitServe batches: arrival order, up to max_batch_size.
        self.predictor = TransformersPredictor(self.settings, probe=ProbePolicy.of(
            self.settings, self.max_batch_size, 0))
        self.predictor.warm_up(self.max_batch_size)

    def decode_request(self, request: dict) -> str:
        text = request.get("text") if isinstance(request, dict) else None
        if not isinstance(text, str) or not 0 < len(text) <= self.settings.max_text_chars:
            raise HTTPException(status_code=422, detail=f"'text' must be a string of 1 to "
                                                        f"{self.settings.max_text_chars} characters")
        return text

    def predict(self, texts: list[str]) -> list:
        return self.predictor.predict(texts)

    def encode_response(self, prediction) -> dict:
        return {"label": prediction.label, "score": prediction.score}


def main() -> int:
    settings = NaiveSettings()
    setup_logging(settings.log_level, "litserve")
    api = SentimentAPI(settings, int(os.environ.get("LITSERVE_MAX_BATCH_SIZE", "32")),
                       float(os.environ.get("LITSERVE_BATCH_TIMEOUT_S", "0.01")))
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host=settings.host, port=settings.port, num_api_servers=1, log_level=settings.log_level.lower(),
               generate_client_file=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
