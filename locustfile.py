"""Load test for /predict, unchanged against the naive server and the batched service.

    locust -f locustfile.py --host http://127.0.0.1:8000 --headless -u 100 -r 20 -t 60s --csv out/run

Texts: SST-2 dev sentences (``SST2_DEV``, default ``../shared/data/sst2/dev.tsv``) in random order, or a
synthetic mix of similar lengths when the file is absent. Think time between a user's requests is uniform in
[LOCUST_WAIT_MIN_S, LOCUST_WAIT_MAX_S] (default 0-1 s); set both to 0 for a saturating closed loop.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

from benchmarks.corpus import load_sentences

SENTENCES, SOURCE = load_sentences()


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
