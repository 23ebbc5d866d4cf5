"""``benchmarks.overhead`` drives the real app through ASGI: every request must be a 200 for it to report."""

import re

from benchmarks.overhead import main


def test_overhead_benchmark_runs_the_real_request_path(capsys):
    assert main(["--requests", "50", "--repeats", "2"]) == 0
    match = re.search(r"API CPU per /predict: ([0-9.]+) us", capsys.readouterr().out)
    assert match and float(match.group(1)) > 0
