"""Load test for /predict, unchanged against the naive server and the batched service.

    locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 100 -r 20 -t 60s --csv out/run

Texts: SST-2 dev sentences (``SST2_DEV``, default ``../shared/data/sst2/dev.tsv``) in random order, or a
synthetic mix of similar lengths when the file is absent. Think time between a user's requests is uniform in
[LOCUST_WAIT_MIN_S, LOCUST_WAIT_MAX_S] (default 0-1 s); set both to 0 for a saturating closed loop.
``LOCUST_RAW_FILE=path``: also write every request's start time, exact latency and outcome (CSV) there, since
Locust's own statistics round latencies.
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import FastHttpUser, between, events, task

from harness.corpus import load_sentences

SENTENCES, SOURCE = load_sentences()
RAW_FILE = os.environ.get("LOCUST_RAW_FILE")
_raw: list[tuple[float, float, int]] = []


class PredictUser(FastHttpUser):
    wait_time = between(float(os.environ.get("LOCUST_WAIT_MIN_S", "0")), float(os.environ.get("LOCUST_WAIT_MAX_S", "1")))

    @task
    def predict(self) -> None:
        text = random.choice(SENTENCES)
        with self.client.post("/predict", json={"text": text}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif "label" not in (response.json() or {}):
                response.failure("no label in the answer")


if RAW_FILE:
    @events.request.add_listener
    def _record(response_time: float, exception: Any = None, start_time: float | None = None, **_: Any) -> None:
        _raw.append((start_time or 0.0, response_time, 0 if exception else 1))

    @events.quitting.add_listener
    def _dump(**_: Any) -> None:
        with open(RAW_FILE, "w") as f:
            f.write("start_time,latency_ms,ok\n")
            f.writelines(f"{start:.6f},{latency:.3f},{ok}\n" for start, latency, ok in _raw)
