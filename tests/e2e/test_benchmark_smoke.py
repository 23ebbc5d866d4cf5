"""The benchmark command end to end in its quick mode with the tiny model: it runs and writes its report."""

import json
import subprocess
import sys

from tests.helpers import ROOT, python_env


def run_quick(module: str, model, out, name: str, timeout: float, *extra: str) -> None:
    """``python -m <module> --quick`` with ``model``, its report named ``name`` in ``out``; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--model", str(model), "--name", name, "--out", str(out), *extra],
        cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_quick_benchmark_writes_json_markdown_and_charts(tiny_model, tmp_path):
    run_quick("benchmarks", tiny_model, tmp_path, "smoke", timeout=300)
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert set(results["closed_loop"]) == {"naive", "batched", "litserve"}  # the peer runs by default
    for system in ("naive", "batched", "litserve"):
        for level in results["closed_loop"][system].values():
            assert level["median"]["failures"] == 0 and level["median"]["rps"] > 0
    for system in ("naive", "batched"):
        assert results["open_loop"][system]["failures"] == 0
    assert all("rps_batched_over_litserve" in r for r in results["ratios"].values())
    assert results["ceiling"]["policies"]["batch_1"]["sentences_per_s"] > 0
    assert sum(results["batch_sizes"].values()) > 0
    markdown = (tmp_path / "smoke.md").read_text()
    assert "batched/naive RPS" in markdown and "In-process ceiling" in markdown and "batched/LitServe RPS" in markdown
    for chart in results["charts"]:
        assert (tmp_path / chart).stat().st_size > 10_000


def test_quick_backends_benchmark_measures_every_row_cold_and_warm(tiny_model, tmp_path):
    run_quick("benchmarks.backends", tiny_model, tmp_path, "backends", timeout=600)
    rows = json.loads((tmp_path / "backends.json").read_text())["rows"]
    assert set(rows) == {"service torch", "service onnxruntime", "service openvino", "service auto",
                         "service faithful", "naive torch", "naive auto", "litserve"}
    assert all(r["failures"] == 0 and r["rps"] > 0 for r in rows.values())
    for backend in ("torch", "onnxruntime", "openvino", "auto", "faithful"):
        row = rows[f"service {backend}"]
        assert row["ceiling"] > 0 and row["worker_rss_mb_ready"] > 0 and row["warm_start_s"] > 0
        assert row["backend"] == backend or backend in ("auto", "faithful")
        # Where the cores' time went: the service's processes, the client, the worker's phases.
        assert {"api", "redis", "worker", "client (wrk)"} <= set(row["cpu_pct"]) and row["cpu_pct"]["worker"] > 0
        assert row["worker_phases_pct"]["forward_s"] > 0
        assert row["texts_per_pass"] >= 1 and row["ceiling_texts_per_pass"] >= 1  # passes under load and in-process
    assert rows["service auto"]["backend"] in ("torch", "onnxruntime", "openvino")  # exact ones only by default
    assert rows["service faithful"]["precision"] == "faithful"  # the fast tier: whatever agrees with fp32 here
    assert rows["litserve"]["backend"] == rows["service auto"]["backend"]  # the peer gets the same backend
    report = (tmp_path / "backends.md").read_text()
    assert "| service auto | exact |" in report and "| service faithful | faithful |" in report
    assert "Where the cores' time went" in report


def test_quick_api_cpu_benchmark_measures_the_served_api_per_request(tiny_model, tmp_path):
    run_quick("benchmarks.api_cpu", tiny_model, tmp_path, "api-cpu", 300, "--floor")
    row, floor = json.loads((tmp_path / "api-cpu.json").read_text())["rows"]
    assert row["checkout"] == str(ROOT) and row["rps"] > 0 and all(r["errors"] == 0 for r in row["runs"])
    assert 10 < row["api_us"] < 100_000 and row["redis_us"] > 0  # CPU per answered request, in microseconds
    assert floor["checkout"].startswith("floor:") and floor["rps"] > 0 and all(r["errors"] == 0 for r in floor["runs"])
    assert 10 < floor["api_us"] < row["api_us"]  # a bare route costs less than the API's whole request path
    assert "| API CPU us / request |" in (tmp_path / "api-cpu.md").read_text()
