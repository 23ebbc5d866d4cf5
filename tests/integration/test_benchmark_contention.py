"""``benchmarks.contention``: the model's in-process rate alone and beside a competitor whose share is measured."""

import json

from benchmarks.contention import main


def test_contention_benchmark_measures_the_rate_alone_and_beside_a_competitor_it_measures(tiny_model, tmp_path):
    assert main(["--quick", "--model", str(tiny_model), "--backend", "torch", "--threads", "1",
                 "--shares", "0", "0.25", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "contention.json").read_text())
    alone, beside = result["rows"]
    assert alone["share"] == 0 and alone["taken"] == 0 and alone["of_alone"] == 1
    assert 0.1 < beside["taken"] < 0.6, beside  # about the quarter of a core it was asked to take
    assert alone["sentences_per_s"] > 0 and beside["sentences_per_s"] > 0
    assert "| 25 |" in (tmp_path / "contention.md").read_text()
