"""The dashboard renderer's quick mode: a real Prometheus scrapes a simulated-worker service under scripted load,
and every panel of the Grafana dashboard is drawn from its own PromQL."""

import json
import shutil
import subprocess
import sys

import pytest

from harness.prometheus import prometheus_binary
from tests.helpers import ROOT, python_env


@pytest.mark.skipif(shutil.which("wrk") is None or prometheus_binary() is None,
                    reason="wrk or prometheus not installed (apt-get install -y wrk prometheus; .ci/run does)")
def test_quick_dashboard_render_draws_the_panels_from_prometheus(tmp_path):
    out = tmp_path / "dashboard.png"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.dashboard", "--quick", "--out", str(out)],
                          cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = json.loads(out.with_suffix(".json").read_text())["series_per_panel"]
    # Traffic, latency, queue, batching and workers have data in any run; refusals and the cache may not.
    empty = [title for title, series in drawn.items() if series == 0 and "429" not in title]
    assert not empty, drawn
