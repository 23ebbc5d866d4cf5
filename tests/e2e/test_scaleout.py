"""Simulated workers (BACKEND=simulated) as real processes: many of them, fed through the real API; and the
scale-out benchmark's quick mode."""

import asyncio
import json
import shutil
import subprocess
import sys

import pytest

from engine.simulated import SIMULATED_LABEL, simulated_score
from tests.e2e.conftest import start_service
from tests.e2e.test_service import fire, leftover_keys, results
from tests.helpers import ROOT, python_env, sentences


def test_four_simulated_workers_answer_each_text_with_its_own_reply(redis_server, tmp_path):
    svc = start_service(redis_server.url, "/no/model/needed", tmp_path, workers=4, BACKEND="simulated",
                        SIMULATED_BATCH_MS="15", SIMULATED_TEXT_MS="1", MAX_BATCH_SIZE="8", MAX_BATCH_TOKENS="0")
    try:
        outcomes = asyncio.run(fire(svc.url, sentences(300, seed=11)))
        for texts, response in outcomes:
            assert response.status_code == 200, response.text
            for text, got in zip(texts, results(response), strict=True):
                assert got == {"label": SIMULATED_LABEL, "score": simulated_score(text)}, text
        assert leftover_keys(svc) == set()
    finally:
        svc.stop()
    # Every worker took part: the load spread over the pool instead of piling on one process.
    for worker in svc.workers:
        stopped = [ln for ln in worker.output().splitlines() if "stopped after" in ln]
        assert stopped and " 0 batches" not in stopped[0], worker.output()[-2000:]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install -y wrk)")
def test_quick_scaleout_benchmark_measures_scaling_and_the_no_op_ceiling(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaleout", "--quick", "--name", "smoke",
                           "--out", str(tmp_path)], cwd=ROOT, env=python_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results_ = json.loads((tmp_path / "smoke.json").read_text())
    points = results_["scaling"]["1"]
    assert set(points) == {"1", "2"}
    for point in points.values():
        assert point["median"]["errors"] == 0 and point["median"]["rps"] > 0
    # Two sleeping workers serve clearly more than one (a loose bound: CI machines are noisy).
    assert points["2"]["median"]["rps"] > 1.4 * points["1"]["median"]["rps"]
    assert results_["noop"]["1"]["16"]["median"]["rps"] > 0
    assert "No-op ceiling" in (tmp_path / "smoke.md").read_text()
    assert (tmp_path / "smoke.png").stat().st_size > 10_000
