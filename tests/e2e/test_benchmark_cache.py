"""The response-cache benchmark's quick mode, on the tiny model: off, every request reaches the worker; on, after
the warm-up every request is a hit and the worker runs nothing."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, python_env


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install -y wrk)")
def test_quick_cache_benchmark_shows_hits_answered_without_the_worker(tiny_model, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cache", "--quick", "--model", str(tiny_model),
                           "--backend", "torch", "--torch-threads", "1", "--name", "smoke", "--out", str(tmp_path)],
                          cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    off, on = results["configurations"].values()
    assert off["median"]["errors"] == on["median"]["errors"] == 0
    assert off["cache_hits"] == off["cache_misses"] == 0  # off: not even counted
    # >=: requests still in flight when wrk stops are answered (and counted) but not counted by wrk
    assert off["texts_run_by_workers"] >= off["requests"] > 0
    assert on["cache_misses"] == 0 and on["cache_hits"] >= on["requests"] > 0
    assert on["texts_run_by_workers"] == 0
    assert "| cache on (600 s) |" in (tmp_path / "smoke.md").read_text()
